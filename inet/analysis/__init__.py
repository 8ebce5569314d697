"""Tools for after the run: the report over many runs, the run viewer, the records of failed sweep jobs."""
