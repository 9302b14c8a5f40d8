"""HMC versions: the shipped definitions, their profiles, and what each version accepts."""

from __future__ import annotations

import copy

import pytest
import yaml
import zhmcclient
from sim.simtest import ACTIVE_PARTITION
from sim.simtest import CPCZ13
from sim.simtest import CPCZ14
from sim.simtest import PASSWORD
from sim.simtest import USERID
from sim.simtest import connect
from sim.simtest import partition
from sim.simtest import rejected

from dpm_hmc_sim import DefinitionError
from dpm_hmc_sim import Simulator
from dpm_hmc_sim.definition import load
from dpm_hmc_sim.definition import resolve
from dpm_hmc_sim.definition import shipped
from dpm_hmc_sim.profiles import QUERY_PARM_MESSAGE

EXPECTED = {
    '2.14.1': ('2.40', {'CPCZ13', 'CPCZ14', 'CPCCLAS'}),
    '2.15.0': ('3.4', {'CPCZ13', 'CPCZ14', 'CPCCLAS'}),
    '2.16.0': ('4.10', {'CPCZ14', 'CPCCLAS'}),
}


def test_every_shipped_definition_loads_with_its_profile():
    assert set(shipped()) == set(EXPECTED)
    for version, (api, cpcs) in EXPECTED.items():
        definition = load(version)
        assert definition.hmc_version == version
        assert definition.api_text == api
        assert definition.profile.api_min <= definition.api_version <= definition.profile.api_max
        assert {cpc.name for cpc in definition.faked_hmc().cpcs.list()} == cpcs


def test_a_profile_name_or_a_path_selects_the_definition(tmp_path):
    assert resolve('2.16.0') == shipped()['2.16.0']
    own = tmp_path / 'own.yaml'
    own.write_text(shipped()['2.14.1'].read_text())
    assert load(own).hmc_version == '2.14.1'


def _definition(version: str, api: str) -> dict:
    data = yaml.safe_load(shipped()['2.15.0'].read_text())
    data = copy.deepcopy(data)
    data['hmc_definition']['api_version'] = api
    data['hmc_definition']['consoles'][0]['properties']['version'] = version
    return data


def test_an_api_version_outside_the_hmc_versions_range_is_refused():
    with pytest.raises(DefinitionError, match=r'HMC 2\.15\.0 speaks API 3\.1 to 3\.4, not 4\.10'):
        load(_definition('2.15.0', '4.10'))
    with pytest.raises(DefinitionError, match=r'not 2\.40'):
        Simulator(_definition('2.16.0', '2.40'), userid=USERID, password=PASSWORD)


def test_an_unknown_hmc_version_is_refused():
    with pytest.raises(DefinitionError, match=r"unknown HMC version '2\.99\.0'"):
        load(_definition('2.99.0', '3.4'))


@pytest.mark.parametrize('version', sorted(EXPECTED))
def test_query_api_version_answers_the_profile(serve, version):
    client = connect(serve(version))
    info = client.query_api_version()
    api = f'{info["api-major-version"]}.{info["api-minor-version"]}'
    assert (info['hmc-version'], api) == (version, EXPECTED[version][0])


@pytest.mark.parametrize('version', ['2.14.1', '2.15.0'])
def test_additional_properties_before_hmc_2_16_is_400_1(serve, version):
    hmc = serve(version)
    cpc = connect(hmc).cpcs.find(name=CPCZ13)
    for listing in (cpc.partitions, cpc.virtual_switches, cpc.adapters):
        with pytest.raises(zhmcclient.HTTPError) as refused:
            listing.list(additional_properties=['description'])
        assert (refused.value.http_status, refused.value.reason) == (400, 1)
        assert refused.value.message == QUERY_PARM_MESSAGE


def test_additional_properties_on_hmc_2_16_is_answered(serve):
    hmc = serve('2.16.0')
    cpc = connect(hmc).cpcs.find(name=CPCZ14)
    (zos,) = cpc.partitions.list(additional_properties=['ifl-processors'])
    assert zos.properties['ifl-processors'] == 2
    assert rejected(hmc) == []


@pytest.mark.parametrize('version', ['2.14.1', '2.15.0'])
def test_properties_filter_before_hmc_2_16_is_400_1(serve, version):
    hmc = serve(version)
    client = connect(hmc)
    linux01 = partition(client, ACTIVE_PARTITION)
    session = client.session
    for uri in (linux01.uri, client.cpcs.find(name=CPCZ13).uri, '/api/console'):
        with pytest.raises(zhmcclient.HTTPError) as refused:
            session.get(f'{uri}?properties=name')
        assert (refused.value.http_status, refused.value.reason) == (400, 1)
    # zhmcclient falls back to a full GET after 400,1 (zc _resource.py ~345).
    linux01.pull_properties(['status'])
    assert linux01.properties['status'] == 'active'


def test_properties_filter_on_hmc_2_16_returns_the_named_properties(serve):
    hmc = serve('2.16.0')
    client = connect(hmc)
    cpc = client.cpcs.find(name=CPCZ14)
    answer = client.session.get(f'{cpc.uri}?properties=name,se-version,no-such-property')
    assert answer == {'name': CPCZ14, 'se-version': '2.14.1'}
    zos = cpc.partitions.find(name='ZOS-LIKE')
    assert client.session.get(f'{zos.uri}?properties=status') == {'status': 'active'}
    assert rejected(hmc) == []
