"""The ``clusterpedia`` command line: runs each tier, or all of them, from one Settings object."""
