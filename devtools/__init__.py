"""Development helpers shared by the tests and the benchmark: throwaway servers and
the processes they run. Not part of the shipped package."""
