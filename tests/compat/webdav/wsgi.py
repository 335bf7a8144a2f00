"""WsgiDAV serving one directory (DAV_ROOT), anonymous read-write."""
import os

from wsgidav.wsgidav_app import WsgiDAVApp

application = WsgiDAVApp({
    "provider_mapping": {"/": os.environ["DAV_ROOT"]},
    # WsgiDAV writes hrefs from mount_path, not SCRIPT_NAME: its mount, as
    # under any WSGI dispatcher.
    "mount_path": os.environ["DAV_MOUNT"],
    "simple_dc": {"user_mapping": {"*": True}},
    "http_authenticator": {"domain_controller": None},
    "verbose": 1,
    "logging": {"enable_loggers": []},
    "property_manager": True,
    "lock_storage": True,
})
