"""Relative links in README.md and docs/ lead somewhere: the file exists, the #anchor too.

Sphinx (make docs, -n -W) checks :ref:, :doc:, option references and included
files; this checks what it cannot: links in Markdown, and links to files (not
documents) in the reStructuredText pages. Anchors of Markdown files follow
GitHub's heading ids. External http(s) links are not checked (offline CI).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docutils import nodes
from docutils.core import publish_doctree

REPO = Path(__file__).resolve().parents[2]
MARKDOWN = sorted([REPO / 'README.md', *(REPO / 'guest_tools').glob('*.md')])
RST = sorted((REPO / 'docs').glob('*.rst'))

_FENCE = re.compile(r'^(```|~~~).*?^\1', re.M | re.S)
_CODE_SPAN = re.compile(r'`[^`\n]*`')
_MD_LINK = re.compile(r'\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_MD_REFERENCE = re.compile(r'^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$', re.M)
_ATX_HEADING = re.compile(r'^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$', re.M)
_MD_INLINE_LINK = re.compile(r'!?\[([^\]]*)\]\([^)]*\)')
_EXTERNAL = re.compile(r'^[a-z][a-z0-9+.-]*:', re.I)


def github_slug(heading: str) -> str:
    """The id GitHub gives a Markdown heading (before de-duplication).

    The rendered text, lower-cased; everything but letters, digits, "_", "-"
    and spaces dropped; each space a "-".
    """
    text = _MD_INLINE_LINK.sub(r'\1', heading).replace('`', '')
    text = re.sub(r'<[^>]+>', '', text).lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def markdown_anchors(text: str) -> set[str]:
    """Every heading id of a Markdown text; repeated ones get -1, -2, ... as on GitHub."""
    anchors: set[str] = set()
    for heading in _ATX_HEADING.findall(_FENCE.sub('', text)):
        slug = base = github_slug(heading)
        count = 0
        while slug in anchors:
            count += 1
            slug = f'{base}-{count}'
        anchors.add(slug)
    return anchors


def markdown_links(text: str) -> list[str]:
    """Link targets of a Markdown text, outside code blocks and code spans."""
    prose = _CODE_SPAN.sub('', _FENCE.sub('', text))
    return _MD_LINK.findall(prose) + _MD_REFERENCE.findall(prose)


def rst_links(text: str) -> list[str]:
    """URIs of the links and hyperlink targets of a reStructuredText page.

    Parsed by docutils alone: Sphinx's roles and directives are unknown to it
    and left aside (Sphinx checks those).
    """
    settings = {
        'report_level': 5,
        'halt_level': 5,
        'file_insertion_enabled': False,
        'raw_enabled': False,
    }
    tree = publish_doctree(text, settings_overrides=settings)
    found = tree.findall(lambda node: isinstance(node, nodes.reference | nodes.target))
    return [node['refuri'] for node in found if node.get('refuri')]


def broken(source: Path, target: str, root: Path = REPO) -> str | None:
    """Why ``target``, a link in ``source``, leads nowhere; None if it resolves."""
    if _EXTERNAL.match(target):
        return None
    path_part, _, anchor = target.partition('#')
    path = (source.parent / path_part).resolve() if path_part else source
    if not path.exists():
        return f'{source.relative_to(root)}: {target}: no such file'
    if anchor and path.suffix == '.md' and anchor not in markdown_anchors(path.read_text()):
        return f'{source.relative_to(root)}: {target}: no such heading'
    if anchor and path.suffix != '.md':
        return f'{source.relative_to(root)}: {target}: anchors are checked in Markdown only'
    return None


def problems(source: Path, root: Path = REPO) -> list[str]:
    """Every link of ``source`` (Markdown or reStructuredText) that leads nowhere."""
    text = source.read_text()
    links = markdown_links(text) if source.suffix == '.md' else rst_links(text)
    return [why for why in (broken(source, link, root) for link in links) if why]


@pytest.mark.parametrize('source', MARKDOWN + RST, ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(source):
    assert problems(source) == []


def test_the_readme_links_to_its_sections():
    # The check above is only worth something if it finds the README's links.
    links = markdown_links((REPO / 'README.md').read_text())
    assert '#hmc-versions-and-the-simulator' in links
    assert '#storage-groups-z14-and-later' in links


@pytest.mark.parametrize(
    ('heading', 'slug'),
    [
        ('Storage groups (z14 and later)', 'storage-groups-z14-and-later'),
        ('Talking to it with `grpcurl`', 'talking-to-it-with-grpcurl'),
        ('The [driver](dpm_frontend/) on compute nodes', 'the-driver-on-compute-nodes'),
        ('HMC 2.14.1 \u2013 2.16.0: what_differs', 'hmc-2141--2160-what_differs'),
        ('Größe & Ärger', 'größe--ärger'),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_broken_files_and_anchors_are_reported(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text(
        '# Title\n\n## Part\n\n## Part\n\n```sh\n# not a heading\n[x](nowhere.md)\n```\n'
        'See [a](#part-1), [b](#part-2), [c](#not-a-heading), [d](other.md#part),\n'
        '[e](missing.md), `[f](in-code.md)`, [g](https://example.com/x#y).\n\n'
        '[h]: missing-too.md\n'
    )
    (tmp_path / 'other.md').write_text('# Part\n')
    page = tmp_path / 'page.rst'
    page.write_text(
        '`a <README.md#title>`_ `b <gone.txt>`__ `c <named_>`_ :ref:`d <label>`\n\n'
        '.. _t: gone.conf\n\n.. _label:\n\nText\n'
    )
    assert problems(readme, tmp_path) == [
        'README.md: #part-2: no such heading',
        'README.md: #not-a-heading: no such heading',
        'README.md: missing.md: no such file',
        'README.md: missing-too.md: no such file',
    ]
    assert problems(page, tmp_path) == [
        'page.rst: gone.txt: no such file',
        'page.rst: gone.conf: no such file',
    ]
