"""dpm_api.v1.contract: the values the proto states only in comments, stated once."""

from __future__ import annotations

import pathlib
import re

from dpm_api.v1 import contract

PROTO = pathlib.Path(__file__).parents[2] / 'protos' / 'dpm_api' / 'v1' / 'dpm_host.proto'


def _comment_of(field: str) -> str:
    """The comment lines right above ``field`` in dpm_host.proto, joined."""
    lines = PROTO.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf'\s*{field}\b', line))
    comment = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith('//'):
            break
        comment.insert(0, line.strip().removeprefix('//').strip())
    return ' '.join(comment)


def test_the_proto_names_the_one_vif_type():
    assert f'only "{contract.DPM_VSWITCH}" is supported' in _comment_of('string vif_type')


def test_the_proto_states_the_nic_limit():
    assert f'at most {contract.MAX_NICS},' in _comment_of('repeated Nic nics')
    assert f'more than {contract.MAX_NICS} NICs' in PROTO.read_text()


def test_an_object_id_is_a_lower_case_uuid_and_nothing_around_it():
    good = '6a3b9f2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b'
    assert contract.OBJECT_ID.fullmatch(good)
    for bad in (good.upper(), good + '\n', ' ' + good, good[:-1], good.replace('-', ''), ''):
        assert not contract.OBJECT_ID.fullmatch(bad), bad


def test_the_proto_names_the_request_id_metadata_and_its_form():
    text = ' '.join(
        line.strip().removeprefix('//').strip() for line in PROTO.read_text().splitlines()
    )
    assert f'"{contract.REQUEST_ID_METADATA_KEY}: req-<uuid>"' in text
    assert f'trailing metadata "{contract.REQUEST_ID_METADATA_KEY}"' in text
    assert 'ErrorInfo metadata "request_id"' in text
    good = 'req-6a3b9f2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b'
    assert contract.REQUEST_ID.fullmatch(good)
    for bad in (good.upper(), good + '\n', good[4:], 'req-' + good, good[:-1]):
        assert not contract.REQUEST_ID.fullmatch(bad), bad
