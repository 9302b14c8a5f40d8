"""Sessions: logon checks the password, logoff forgets, expiry makes zhmcclient log on again."""

from __future__ import annotations

import time

import pytest
import requests
import zhmcclient
from sim.simtest import USERID
from sim.simtest import connect


def logons(hmc) -> int:
    return hmc.sim.session_counts()['userids'][USERID]['logons']


def test_logon_and_logoff(hmc):
    client = connect(hmc)
    session = client.session
    session.logon()
    session_id = session.session_id
    assert hmc.sim.session_counts() == {
        'open': 1,
        'userids': {USERID: {'logons': 1, 'refused': 0, 'logoffs': 0}},
    }
    session.logoff()
    assert hmc.sim.session_counts()['open'] == 0
    assert hmc.sim.session_counts()['userids'][USERID]['logoffs'] == 1
    # The HMC forgot the session: its id is refused with 403,5 ...
    answer = requests.get(
        f'https://{hmc.host}:{hmc.port}/api/cpcs',
        headers={'X-API-Session': session_id},
        verify=hmc.ca_file,
        timeout=10,
    )
    assert (answer.status_code, answer.json()['reason']) == (403, 5)


def test_a_request_with_a_forgotten_session_id_logs_on_again(hmc):
    first = connect(hmc)
    first.session.logon()
    stale = zhmcclient.Session(
        hmc.host,
        USERID,
        hmc.password,
        port=hmc.port,
        verify_cert=hmc.ca_file,
        session_id=first.session.session_id,
    )
    first.session.logoff()
    # ... and zhmcclient logs on again by itself.
    assert len(zhmcclient.Client(stale).cpcs.list()) == 3
    assert logons(hmc) == 2
    assert stale.session_id != first.session.session_id


def test_no_session_header_is_403_4(hmc):
    answer = requests.get(f'https://{hmc.host}:{hmc.port}/api/cpcs', verify=hmc.ca_file, timeout=10)
    assert (answer.status_code, answer.json()['reason']) == (403, 4)
    version = requests.get(
        f'https://{hmc.host}:{hmc.port}/api/version', verify=hmc.ca_file, timeout=10
    )
    assert version.status_code == 200  # Query API Version needs no session


def test_a_wrong_password_is_refused_with_server_auth_error(hmc):
    session = zhmcclient.Session(
        hmc.host, USERID, 'not-the-password', port=hmc.port, verify_cert=hmc.ca_file
    )
    with pytest.raises(zhmcclient.ServerAuthError) as refused:
        session.logon()
    assert (refused.value.details.http_status, refused.value.details.reason) == (403, 0)
    assert hmc.sim.session_counts()['userids'][USERID]['refused'] == 1


def test_an_expired_session_is_renewed_transparently(hmc):
    client = connect(hmc)
    client.cpcs.list()
    assert hmc.sim.expire_sessions() == 1
    assert len(client.cpcs.list()) == 3
    assert logons(hmc) == 2
    # The refused request is in the log, with the re-logon after it.
    statuses = [(r.method, r.uri, r.status, r.reason) for r in hmc.sim.requests()][-3:]
    assert statuses == [
        ('GET', '/api/cpcs', 403, 5),
        ('POST', '/api/sessions', 200, None),
        ('GET', '/api/cpcs', 200, None),
    ]


def test_an_idle_session_expires_after_the_timeout(serve):
    hmc = serve(session_timeout=0.3)
    client = connect(hmc)
    client.cpcs.list()
    client.cpcs.list()
    assert logons(hmc) == 1
    time.sleep(0.4)
    client.cpcs.list()
    assert logons(hmc) == 2


def test_expired_and_logon_refused_raises_server_auth_error(hmc):
    client = connect(hmc)
    client.cpcs.list()
    hmc.sim.expire_sessions()
    hmc.sim.configure(logon_refused=True)
    with pytest.raises(zhmcclient.ServerAuthError):
        client.cpcs.list()
    hmc.sim.configure(logon_refused=False)
    assert len(client.cpcs.list()) == 3
