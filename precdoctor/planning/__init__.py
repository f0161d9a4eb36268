"""The plan (which nodes run in FP32), its pins file and the input samples."""
