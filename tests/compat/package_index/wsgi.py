"""pypiserver (a real Bottle app): a package index over PYPI_ROOT."""
import os

import pypiserver

application = pypiserver.app(roots=[os.environ["PYPI_ROOT"]], authenticate=[], password_file=".")
