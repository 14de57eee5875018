from setuptools import find_packages, setup

setup(
    name="allocation",
    version="0.1.0",
    description="Stock allocation service: allocates order lines to batches of stock.",
    python_requires=">=3.11",
    package_dir={"": "src"},
    packages=find_packages("src"),
    # The Alembic migration environment ships with the package (no alembic.ini).
    package_data={"allocation.adapters.sql.migrations": ["script.py.mako"]},
    install_requires=[
        "flask>=3.0",
        "sqlalchemy>=2.0",
        "alembic>=1.13",
        "psycopg2-binary>=2.9",
        "redis>=5.0",
        "pydantic>=2.6",
        "granian[pname]>=2.8,<3",  # pname: workers named in ps
        "tenacity>=8.2",
        "click>=8.1",
        "prometheus-client>=0.20",
        "python-json-logger>=3.1",
        # Only for its Swagger UI files, which the /docs page serves.
        "flask-swagger-ui>=5.21,<6",
    ],
    entry_points={"console_scripts": ["allocation=allocation.entrypoints.cli.commands:main"]},
)
