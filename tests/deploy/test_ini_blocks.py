"""Every ini block of the README and the guide works when pasted.

oslo.config keeps a ``# ...`` after a value as part of the value, and ignores
options it does not know: a block is pasted into a file and read with the
options of whatever reads it (dpm-backend, nova-compute with the driver, or a
systemd drop-in), and each of its values must be known and valid.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from nova.conf import CONF as NOVA_CONF
from oslo_config import cfg

from dpm_backend import config as backend_config
from dpm_frontend import conf as dpm_conf

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_SECTIONS = {'Unit', 'Service', 'Install'}
# Directives the project's drop-ins use; anything else in a [Service] block is a mistake.
SYSTEMD_DIRECTIVES = {'LoadCredential', 'SupplementaryGroups', 'Environment'}
BACKEND_SECTIONS = {'hmc', 'backend', 'coordination'}


def _markdown_blocks(path: Path) -> list[str]:
    return re.findall(r'^```ini\n(.*?)^```', path.read_text(), re.S | re.M)


def _rst_blocks(path: Path) -> list[str]:
    blocks = []
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() != '.. code-block:: ini':
            continue
        indent = len(line) - len(line.lstrip()) + 3
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) < indent:
                break
            body.append(following[indent:])
        blocks.append('\n'.join(body).strip('\n') + '\n')
    return blocks


def _blocks() -> list[tuple[str, str]]:
    found = [(f'README.md#{i}', b) for i, b in enumerate(_markdown_blocks(REPO / 'README.md'))]
    for page in sorted((REPO / 'docs').glob('*.rst')):
        found += [(f'{page.name}#{i}', b) for i, b in enumerate(_rst_blocks(page))]
    return found


BLOCKS = _blocks()


def test_the_readme_and_the_guide_have_ini_blocks():
    names = {name.split('#')[0] for name, _ in BLOCKS}
    assert {'README.md', 'install.rst'} <= names, names


def _sections(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    cfg.ConfigParser(str(path), sections).parse()
    return sections


def _check_systemd(path: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    for section in parser.sections():
        assert section in SYSTEMD_SECTIONS, section
        for key, value in parser[section].items():
            assert key in SYSTEMD_DIRECTIVES, key
            if key == 'LoadCredential':
                name, _, source = value.partition(':')
                assert name and source.startswith('/'), value


def _nova_conf(sections: dict) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for key in sections.get('DEFAULT', {}):
        assert key in NOVA_CONF._opts, f'[DEFAULT] {key}: not a nova option'
        conf.register_opt(NOVA_CONF._opts[key]['opt'])
    dpm_conf.register_opts(conf)
    return conf


def _backend_conf(sections: dict) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    backend_config.register_opts(conf)
    for section in sections:
        if section.startswith(backend_config.HOST_GROUP_PREFIX):
            conf.register_opts(backend_config.host_opts, group=section)
    return conf


@pytest.mark.parametrize(('name', 'block'), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_an_ini_block_holds_only_known_options_with_plain_valid_values(tmp_path, name, block):
    path = tmp_path / 'pasted.conf'
    path.write_text(block)
    sections = _sections(path)
    assert sections, f'{name}: no section'
    for section, values in sections.items():
        for key, items in values.items():
            for item in items:
                assert '#' not in item, f'{name}: [{section}] {key}: a comment in the value'
    if set(sections) & SYSTEMD_SECTIONS:
        _check_systemd(path)
        return
    backend = set(sections) & BACKEND_SECTIONS or any(
        s.startswith(backend_config.HOST_GROUP_PREFIX) for s in sections
    )
    conf = _backend_conf(sections) if backend else _nova_conf(sections)
    conf(['--config-file', str(path)], project='check')
    for section, values in sections.items():
        group = conf if section == 'DEFAULT' else conf[section]
        for key in values:
            assert key in group, f'{name}: [{section}] {key}: unknown option'
            getattr(group, key)  # raises on an invalid value


def test_the_nova_conf_block_of_the_readme_gives_nova_plain_values(tmp_path):
    readme = (REPO / 'README.md').read_text()
    section = readme.split('## The Nova driver on compute nodes', 1)[1]
    path = tmp_path / 'nova.conf'
    path.write_text(_markdown_blocks_text(section)[0])
    conf = _nova_conf(_sections(path))
    conf(['--config-file', str(path)], project='nova')
    assert (conf.host, conf.compute_driver, conf.concurrency_backend) == (
        'cpc1',
        'dpm.DPMDriver',
        'threading',
    )
    assert conf.dpm.backend.startswith('unix:/run/dpm-backend/')


def _markdown_blocks_text(text: str) -> list[str]:
    return re.findall(r'^```ini\n(.*?)^```', text, re.S | re.M)
