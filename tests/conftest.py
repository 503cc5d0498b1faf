import os

# Tests always run in QUICK mode with the course's default seed, whatever the caller's shell says.
os.environ["PTFT_MODE"] = "QUICK"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
