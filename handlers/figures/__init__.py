"""The figures the centre is judged on, and their trend."""
