"""How the HTTP API describes itself: each operation declared once, /openapi.json, /docs."""
