"""Sphinx configuration of the operator guide (make docs).

Offline by design: a built-in theme, no intersphinx, no external link check
(the CI machine reaches package registries only). Internal references, option
references and included files are checked by ``sphinx-build -n -W``; relative
links in README.md and these pages by tests/deploy/test_docs.py.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# show-options imports the option lists from the working tree, not an installed copy.
sys.path.insert(0, str(REPO))

project = 'nova-dpm over gRPC'
copyright = 'the nova-dpm over gRPC authors'
release = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['version']
version = release

extensions = [
    'oslo_config.sphinxext',
    'reno.sphinxext',
]

root_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_theme_options = {'nosidebar': False, 'show_powered_by': False}
html_sidebars = {'**': ['globaltoc.html', 'searchbox.html']}
html_static_path: list[str] = []
# Every cross-reference must resolve (sphinx-build -n).
nitpicky = True


def setup(app):
    """A reference to an option that does not exist is a warning (an error with -W).

    oslo.config's domain raises KeyError for it, which stops the build with a
    traceback instead of naming the reference.
    """
    from oslo_config import sphinxext

    class ConfigDomain(sphinxext.ConfigDomain):
        def resolve_xref(self, env, fromdocname, builder, typ, target, node, contnode):
            kind = {'option': 'options', 'group': 'groups'}.get(typ)
            if kind and target not in env.domaindata['oslo.config'][kind]:
                return None
            return super().resolve_xref(env, fromdocname, builder, typ, target, node, contnode)

    app.add_domain(ConfigDomain, override=True)
