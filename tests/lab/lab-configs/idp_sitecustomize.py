"""Lab-only fix-up of the idp stand-in (mounted by compose.lab.yml, imported through PYTHONPATH).

oidc-provider-mock 0.3.4 signs ID tokens without a ``kid`` in the JWS header, although its JWKS names
the key with one. Real providers (Keycloak) send the ``kid``, and mozilla-django-oidc (Drive's
OIDC_VERIFY_KID default True) refuses a token whose header ``kid`` matches no JWKS key
("Could not find a valid JWKS."). This hook adds the signing key's ``kid`` to the provider's JWT
configuration (authlib then writes it into the header), so the stand-in behaves like Keycloak here.

It only acts when ``oidc_provider_mock._app`` is imported (a meta-path hook; nothing else is imported
at interpreter start, so healthcheck interpreters stay cheap).
"""

import importlib.abc
import importlib.util
import sys


def _patch(module):
    for obj in list(vars(module).values()):
        orig = vars(obj).get("get_jwt_config") if isinstance(obj, type) else None
        if orig is None:
            continue

        def get_jwt_config(self, *args, _orig=orig, **kwargs):
            config = _orig(self, *args, **kwargs)
            kid = (config.get("key") or {}).get("kid")
            if kid:
                config.setdefault("kid", kid)
            return config

        obj.get_jwt_config = get_jwt_config


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "oidc_provider_mock._app":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _PatchOnImport())
