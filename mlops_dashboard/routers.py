"""The one router every app's API uses."""

from rest_framework.routers import SimpleRouter


class ApiRouter(SimpleRouter):
    """Objects are found by their integer id: a path id that is not one (`null,null`, or a number
    past the database's integer range) is a 404 from the URL resolver, never an error in a view."""

    ID = r"[0-9]{1,18}"

    def __init__(self):
        super().__init__(trailing_slash=True)

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        kwarg = getattr(viewset, "lookup_url_kwarg", None) or getattr(viewset, "lookup_field", "pk")
        # A viewset found by something else (a username) says what that looks like.
        return f"(?P<{lookup_prefix}{kwarg}>{getattr(viewset, 'lookup_value_regex', self.ID)})"
