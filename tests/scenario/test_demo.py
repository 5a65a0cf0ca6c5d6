import io

from bot.demo import SCRIPT, Step, run_demo


def test_the_demo_walks_through_and_exits_zero():
    out = io.StringIO()
    assert run_demo(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "/mam help" in text and "You are a mam-bot admin." in text
    assert "Android app protection evaluation" in text
    assert "Only mam-bot admins and approvers can" in text  # Jordan refused
    assert "Did you mean `/mam connectors`?" in text
    assert "App Home of @sam" in text
    assert "Demo finished." in text


def test_the_demo_fails_loudly_when_a_step_does_not_happen():
    out = io.StringIO()
    broken = [*SCRIPT[:1], Step("click something that is not there", SCRIPT[0].user, click="Launch rockets")]
    assert run_demo(out, broken) == 1
    assert "no button labelled 'Launch rockets'" in out.getvalue()
