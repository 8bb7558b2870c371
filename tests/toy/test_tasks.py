"""The toy tasks: answers are right, questions fit the tokenizer, the registry names them."""

import random

import pytest

from effopd_verl.toy.tasks import TASKS, draw_unique, get_task, solve_add, solve_reverse, task_names
from effopd_verl.toy.tokenizer import CHARS

SOLVERS = {"add": solve_add, "reverse": solve_reverse}


def test_registry_has_at_least_two_variants():
    assert task_names() == list(TASKS) and len(task_names()) >= 2
    assert set(task_names()) == set(SOLVERS)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="known: add, reverse"):
        get_task("mul")


@pytest.mark.parametrize("name", task_names())
def test_answers_are_exact_and_fit_the_alphabet(name):
    task = get_task(name)
    rng = random.Random(0)
    for _ in range(2000):
        question, answer = task.draw(rng)
        assert SOLVERS[name](question) == answer
        assert answer == answer.strip() and answer
        assert set(question + answer) <= set(CHARS)
        assert len(question) <= task.max_question_chars and len(answer) <= task.max_answer_chars
    assert task.data_source == f"effopd_toy/{name}"


def test_known_answers():
    assert solve_add("12+34=") == "46" and solve_add("99+1=") == "100" and solve_add("0+0=") == "0"
    assert solve_reverse("rev:abcd=") == "dcba"


def test_draws_are_deterministic_distinct_and_respect_exclusions():
    task = get_task("reverse")
    a = draw_unique(task, random.Random(3), 500)
    assert a == draw_unique(task, random.Random(3), 500)
    assert len({q for q, _ in a}) == 500
    excluded = {q for q, _ in a[:100]}
    b = draw_unique(task, random.Random(3), 300, exclude=excluded)
    assert not excluded & {q for q, _ in b}


def test_an_exhausted_space_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="cannot draw"):
        draw_unique(get_task("add"), random.Random(0), 10_001)


def test_add_enumerates_its_whole_space():
    pairs = get_task("add").enumerate_all()
    assert len(pairs) == 10_000 and len({q for q, _ in pairs}) == 10_000
    assert ("37+85=", "122") in pairs
