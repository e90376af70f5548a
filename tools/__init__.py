"""What the developers run and production never does: the test harness, the test
databases and the font subsetting script. Not in the wheel (tests/test_packaging.py)."""
