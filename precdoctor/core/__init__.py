"""The base layer: errors, limits, record files, destinations, quoting, formats, ops, statuses, progress."""
