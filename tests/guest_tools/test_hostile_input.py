"""Nothing from the cmdline or the arguments is ever evaluated by the shell.

Every hostile token would create MARK (or delete VICTIM) if any part of it
reached eval, an unquoted expansion, a regex built from input or bash
arithmetic. Both scripts run on the same fake root; the well-formed token
for 8004 must still be handled.
"""

import pytest

HOSTILE_TOKENS = [
    '$(touch${IFS}MARK);',
    '8001,0,$(touch${IFS}MARK);',
    '8001,0,0a0000000011;$(touch${IFS}MARK);',
    '`touch${IFS}MARK`;',
    '8001,0,`touch${IFS}MARK`;',
    '8001,0,0a00000000`touch MARK`11;',
    ';rm${IFS}-rf${IFS}VICTIM;',
    '8001,0;rm -rf VICTIM;',
    '8001,0&&touch${IFS}MARK;',
    '8001,0||touch${IFS}MARK;',
    '8001,0|touch${IFS}MARK;',
    '8001,0,0a0000000011>MARK;',
    '8001,0,0a0000000011;<(touch${IFS}MARK);',
    'a[$(touch${IFS}MARK)],0;',
    '8001,a[$(touch${IFS}MARK)];',
    '8001,0,a[$(touch${IFS}MARK)];',
    '$((1+1)),0;',
    "8001,0,0a0000000011';touch${IFS}MARK;'",
    '8001,0,0a0000000011";touch${IFS}MARK;"',
    '8001,0,0a0000000011\\;touch${IFS}MARK;',
    '8001,0,*;',
    '8001,0,0a00000000[0-9]?;',
    '${PATH},0;',
    '8001,0,(.*)\\1;',
]


@pytest.fixture
def hostile_root(fake_root_factory, tmp_path):
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'keep').write_text('x')

    def make(token):
        token = token.replace('MARK', str(tmp_path / 'pwned')).replace('VICTIM', str(victim))
        fake = fake_root_factory(f'root=/dev/dasda1 {token} 8004,0,0a0000000044;', ['8001', '8004'])
        fake.add_interface('0.0.8001', 'enc8001')
        return fake

    yield make
    assert (victim / 'keep').exists(), 'VICTIM was deleted: input was evaluated'


def assert_not_evaluated(tmp_path, result):
    assert not (tmp_path / 'pwned').exists(), (
        f'MARK was created: input was evaluated\n{result.stderr}'
    )


@pytest.mark.parametrize('token', HOSTILE_TOKENS)
def test_hostile_token_is_never_evaluated_by_autoconfigure(hostile_root, tmp_path, token):
    fake = hostile_root(token)

    result = fake.autoconfigure()

    assert_not_evaluated(tmp_path, result)
    assert result.returncode == 1
    assert 'malformed token' in result.stderr
    assert fake.qeth_device('0.0.8004') == {'layer2': '1', 'portno': '0', 'online': '1'}


@pytest.mark.parametrize('token', HOSTILE_TOKENS)
def test_hostile_token_is_never_evaluated_by_setmac(hostile_root, tmp_path, token):
    fake = hostile_root(token)

    result = fake.setmac('0.0.8001', 'enc8001')

    assert_not_evaluated(tmp_path, result)
    assert result.returncode == 1
    # Only a well-formed token ahead of the hostile part sets a MAC for 8001.
    assert [c for c in fake.calls('ip') if 'enc8001' in c] in (
        [],
        [['ip', 'link', 'set', 'dev', 'enc8001', 'address', '0a:00:00:00:00:11']],
    )


@pytest.mark.parametrize(
    'args',
    [
        ('$(touch MARK)',),
        ('`touch MARK`',),
        ('a[$(touch MARK)]',),
        ('0.0.8004', '$(touch MARK)'),
        ('0.0.8004', 'a[$(touch MARK)]'),
        ('0.0.8004;touch MARK',),
    ],
)
def test_hostile_arguments_to_setmac_are_never_evaluated(hostile_root, tmp_path, args):
    fake = hostile_root('')
    args = tuple(a.replace('MARK', str(tmp_path / 'pwned')) for a in args)

    result = fake.setmac(*args)

    assert_not_evaluated(tmp_path, result)
    assert result.returncode == 1
    assert fake.calls('ip') == []


def test_hostile_settle_timeout_is_never_evaluated(fake_root_factory, tmp_path):
    fake = fake_root_factory('8001,0;', ['8001'])

    result = fake.autoconfigure(DPM_SETTLE_TIMEOUT=f'a[$(touch {tmp_path / "pwned"})]')

    assert_not_evaluated(tmp_path, result)
    assert result.returncode == 0, result.stderr
    assert ['udevadm', 'settle', '--timeout=10'] in fake.calls('udevadm')
