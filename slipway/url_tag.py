"""Django's `{% url %}` tag with its answers remembered, a template builtin in place of Django's own.

A page links every row of its tables (the home page 40 times), and each reverse() costs about 40 µs, as
much as the rest of the row; the same links come back on every request. An answer is kept for the
same view name, plain arguments (int or str: their text cannot change under the same key), current app,
URL configuration and script prefix, so it is the one reverse() gives; other arguments are reversed
each time.
"""

from functools import lru_cache

from django import template
from django.conf import settings
from django.template.base import Parser, Token
from django.template.context import Context
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()
PLAIN = (int, str)


@lru_cache(maxsize=4096)
def remembered(where: tuple[str | None, str, str], view_name: str, args: tuple, kwargs: tuple,
               current_app: str | None) -> str:
    """reverse()'s answer; `where` (URL configuration, the default one, script prefix) is part of the key only."""
    return reverse(view_name, args=args, kwargs=dict(kwargs), current_app=current_app)


class RememberedURLNode(URLNode):
    def render(self, context: Context) -> str:
        args = tuple(arg.resolve(context) for arg in self.args)
        kwargs = tuple(sorted((name, value.resolve(context)) for name, value in self.kwargs.items()))
        view_name = self.view_name.resolve(context)
        if not isinstance(view_name, str) or not all(type(v) in PLAIN for v in (*args, *(v for _, v in kwargs))):
            return super().render(context)
        try:  # as Django's URLNode picks it
            current_app = context.request.current_app  # type: ignore[attr-defined]
        except AttributeError:
            try:
                current_app = context.request.resolver_match.namespace  # type: ignore[attr-defined]
            except AttributeError:
                current_app = None
        if self.asvar:  # a missing URL is "" here, as in Django's tag
            try:
                context[self.asvar] = self.reverse(view_name, args, kwargs, current_app)
            except NoReverseMatch:
                context[self.asvar] = ""
            return ""
        url = self.reverse(view_name, args, kwargs, current_app)
        return conditional_escape(url) if context.autoescape else url

    @staticmethod
    def reverse(view_name: str, args: tuple, kwargs: tuple, current_app: str | None) -> str:
        where = (get_urlconf(), settings.ROOT_URLCONF, get_script_prefix())
        return remembered(where, view_name, args, kwargs, current_app)


@register.tag
def url(parser: Parser, token: Token) -> RememberedURLNode:
    node = django_url(parser, token)
    return RememberedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
