"""The remembered {% url %} tag (slipway/url_tag.py) answers as Django's own does."""

import pytest
from django.template import engines
from django.urls import NoReverseMatch, clear_script_prefix, reverse, set_script_prefix

from slipway.url_tag import RememberedURLNode


def render(source: str, **context: object) -> str:
    return engines["django"].from_string(source).render(context)


def test_it_is_the_url_tag_of_every_template():
    template = engines["django"].from_string("{% url 'home' %}")
    assert any(isinstance(node, RememberedURLNode) for node in template.template.nodelist)


def test_it_gives_reverse_answers_for_ids_names_and_keywords():
    assert render("{% url 'release' 7 %} {% url 'release' n %}", n=8) == f"{reverse('release', args=[7])} /releases/8/"
    assert render("{% url 'model' name %}", name="a b") == reverse("model", args=["a b"]) == "/models/a%20b/"
    assert render("{% url 'release' release_id=9 %}") == "/releases/9/"
    assert render("{% url 'service' 'production' 'big' %}") == "/environments/production/models/big/"


def test_the_same_link_follows_the_script_prefix():
    assert render("{% url 'release' 7 %}") == "/releases/7/"
    set_script_prefix("/slipway/")
    try:
        assert render("{% url 'release' 7 %}") == "/slipway/releases/7/"
    finally:
        clear_script_prefix()
    assert render("{% url 'release' 7 %}") == "/releases/7/"


def test_a_missing_url_raises_or_is_empty_with_as():
    with pytest.raises(NoReverseMatch):
        render("{% url 'no-such-page' %}")
    assert render("{% url 'no-such-page' as link %}[{{ link }}]") == "[]"
    assert render("{% url 'release' 3 as link %}{{ link }}") == "/releases/3/"


def test_other_arguments_are_reversed_each_time():
    class Named:
        def __init__(self, text: str) -> None:
            self.text = text

        def __str__(self) -> str:
            return self.text

    thing = Named("first")
    assert render("{% url 'model' thing %}", thing=thing) == "/models/first/"
    thing.text = "second"
    assert render("{% url 'model' thing %}", thing=thing) == "/models/second/"
