import os
import sys

# Test the source tree, whether or not the package is installed.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
