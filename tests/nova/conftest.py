"""Nova's own test machinery, set up to run under pytest in threading mode."""

from __future__ import annotations

# Nova's test packages must be imported before nova.test (they set up logging,
# object registration and the threading mode it checks).
import nova.tests.functional
import nova.tests.unit  # noqa: F401

from dpm_frontend import conf as dpm_conf
from nova import test

# nova.test.TestCase deletes its instance attributes after each test, which
# breaks pytest's unittest plugin reporting; pytest frees them itself.
test.TestCase._clear_attrs = lambda self: None
dpm_conf.register_opts(test.CONF)
