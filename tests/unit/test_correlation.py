"""Request ids in the backend: taken only well formed, bound per call, in log lines and errors."""

from __future__ import annotations

import collections
import logging
import uuid

import grpc
import pytest
from dpmtest import write_config
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from oslo_config import cfg
from oslo_context import context as oslo_context_mod
from oslo_log import formatters

from dpm_api.v1 import contract
from dpm_backend import config as config_mod
from dpm_backend import correlation
from dpm_backend import errors

KEY = 'x-openstack-request-id'
GOOD = 'req-6a3b9f2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b'
HOSTILE = [
    GOOD + '\n2026-01-01 00:00:00.000 1 INFO dpm_backend.service [req-forged] forged line',
    '\x1b[31m' + GOOD + '\x1b[0m',
    GOOD + '\x00',
    GOOD + ' ',
    ' ' + GOOD,
    GOOD.upper(),
    GOOD[:-1],
    GOOD[4:],  # the uuid alone
    'req-' + 'a' * 5000,
    'req-%(message)s',
    GOOD.replace('-', '', 1),
    '',
]
Details = collections.namedtuple('Details', ['method', 'invocation_metadata'])


def test_the_contract_names_openstacks_header_and_novas_form():
    assert contract.REQUEST_ID_METADATA_KEY == KEY
    assert contract.REQUEST_ID.fullmatch(GOOD)
    # Nova's ids are oslo.context's: req- and a lower-case uuid4.
    assert contract.REQUEST_ID.fullmatch(f'req-{uuid.uuid4()}')


def test_one_well_formed_request_id_is_taken():
    assert correlation.sent_request_id([(KEY, GOOD)]) == GOOD
    assert correlation.sent_request_id([('authorization', 'Bearer x'), (KEY, GOOD)]) == GOOD


@pytest.mark.parametrize('value', HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_request_ids_are_dropped(value):
    assert correlation.sent_request_id([(KEY, value)]) is None


@pytest.mark.parametrize(
    'metadata',
    [None, (), [(KEY, GOOD), (KEY, GOOD)], [(KEY, GOOD.encode())], [(KEY + '-bin', GOOD)]],
    ids=['none', 'empty', 'twice', 'bytes', 'other-key'],
)
def test_no_or_ambiguous_request_ids_are_none(metadata):
    assert correlation.sent_request_id(metadata) is None


class FakeContext:
    """The trailing-metadata half of a grpc.ServicerContext."""

    def __init__(self):
        self.trailers = None

    def set_trailing_metadata(self, metadata):
        self.trailers = metadata

    def trailing_metadata(self):
        return self.trailers


def intercepted(behaviour, metadata):
    """``behaviour`` as the interceptor hands it to gRPC, for a call with ``metadata``."""
    handler = correlation.RequestIdInterceptor().intercept_service(
        lambda details: grpc.unary_unary_rpc_method_handler(behaviour),
        Details('/dpm_api.v1.DPMHost/ListInstances', metadata),
    )
    return handler.unary_unary


def test_the_id_is_bound_while_the_handler_runs_and_returned_in_the_trailers():
    seen = []
    handler = intercepted(
        lambda request, context: seen.append(correlation.current()), [(KEY, GOOD)]
    )
    context = FakeContext()
    assert correlation.current() is None
    handler(None, context)
    assert seen == [GOOD]
    assert correlation.current() is None
    assert context.trailers == ((KEY, GOOD),)


def test_an_aborted_call_keeps_its_status_trailers_and_gets_the_id_too():
    status = errors.internal('list instances').to_status()

    def aborts(request, context):
        context.set_trailing_metadata(status.trailing_metadata)
        raise RuntimeError('abort')

    context = FakeContext()
    with pytest.raises(RuntimeError):
        intercepted(aborts, [(KEY, GOOD)])(None, context)
    assert context.trailers == (*status.trailing_metadata, (KEY, GOOD))
    assert correlation.current() is None


@pytest.mark.parametrize('metadata', [(), [(KEY, HOSTILE[0])]], ids=['none', 'malformed'])
def test_a_call_without_a_well_formed_id_gets_one_of_its_own(metadata, caplog):
    caplog.set_level(logging.DEBUG)
    correlation.add_request_id_to_log_records()
    seen = []

    def behaviour(request, context):
        seen.append(correlation.current())
        logging.getLogger('dpm_backend.service').info('working')

    for _ in range(2):
        context = FakeContext()
        intercepted(behaviour, metadata)(None, context)
        assert context.trailers == ((KEY, seen[-1]),)
    assert all(contract.REQUEST_ID.fullmatch(made) for made in seen)
    assert seen[0] != seen[1]
    working = [r for r in caplog.records if r.getMessage() == 'working']
    assert [r.request_id for r in working] == seen
    assert 'forged' not in caplog.text


def test_error_info_names_the_request_id_of_the_call_it_answers():
    def info_of(error):
        trailers = dict(error.to_status().trailing_metadata)
        status = status_pb2.Status.FromString(trailers['grpc-status-details-bin'])
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        return info

    assert 'request_id' not in info_of(errors.host_not_found('cpc9')).metadata
    with correlation.bound(GOOD):
        info = info_of(errors.host_not_found('cpc9'))
    assert dict(info.metadata) == {'host': 'cpc9', 'request_id': GOOD}
    assert correlation.current() is None


def test_log_lines_of_a_call_show_its_id_and_the_others_format_as_before(tmp_path, monkeypatch):
    # The backend process has no oslo context of its own; tests before this one
    # may have left one current in this thread (Nova's).
    monkeypatch.setattr(oslo_context_mod, 'get_current', lambda: None)
    conf = cfg.ConfigOpts()
    config_mod.load(['--config-file', str(write_config(tmp_path / 'c.conf', tmp_path / 's'))], conf)
    formatter = formatters.ContextFormatter(config=conf, project='dpm-backend')
    correlation.add_request_id_to_log_records()
    correlation.add_request_id_to_log_records()  # once is enough; twice changes nothing
    logger = logging.getLogger('dpm_backend.service')

    def line(message, *args):
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, args, None)
        return formatter.format(record)

    outside = line('Serving DPMHost for hosts %s', 'cpc1')
    with correlation.bound(GOOD):
        inside = line('Created partition %s', 'OpenStack-cpc1-x')
        nested = logging.getLogRecordFactory()('n', logging.INFO, __file__, 1, 'm', (), None)
    assert ' [-] Serving DPMHost for hosts cpc1' in outside
    assert f' INFO dpm_backend.service [{GOOD}] Created partition OpenStack-cpc1-x' in inside
    assert nested.request_id == GOOD
    assert not hasattr(
        logger.makeRecord('n', logging.INFO, __file__, 1, 'm', (), None), 'request_id'
    )
