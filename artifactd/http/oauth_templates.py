"""Server-rendered pages of the OAuth flows: sign in, set a new password, consent,
device code entry, result. Plain HTML forms; no JavaScript anywhere."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{% block title %}artifactd{% endblock %} · artifactd</title>
<style>
 body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; background: #f4f5f7; color: #1f2933;
        margin: 0; line-height: 1.5; }
 main { max-width: 30rem; margin: 4rem auto; background: #fff; border-radius: 8px; padding: 2rem 2.25rem;
        box-shadow: 0 1px 3px rgba(0,0,0,.12); }
 h1 { font-size: 1.35rem; margin: 0 0 1rem; }
 label { display: block; font-weight: 600; margin: 1rem 0 .25rem; }
 input[type=email], input[type=password], input[type=text] { width: 100%; box-sizing: border-box;
        padding: .55rem .6rem; border: 1px solid #9aa5b1; border-radius: 4px; font-size: 1rem; }
 .buttons { display: flex; gap: .75rem; margin-top: 1.5rem; }
 button { font-size: 1rem; padding: .55rem 1.2rem; border-radius: 4px; border: 1px solid #3e4c59;
          background: #fff; cursor: pointer; }
 button.primary { background: #1f4bb5; border-color: #1f4bb5; color: #fff; }
 .error { background: #fde8e8; border: 1px solid #e0a2a2; padding: .6rem .8rem; border-radius: 4px; }
 .note { color: #52606d; font-size: .9rem; }
 ul.scopes li { margin: .3rem 0; }
 code.user-code { font-size: 1.4rem; letter-spacing: .15rem; }
</style>
</head>
<body>
<main>
{% if error %}<p class="error" role="alert" id="error">{{ error }}</p>{% endif %}
{% block body %}{% endblock %}
</main>
</body>
</html>
"""

_HIDDEN = """{% for k, v in hidden.items() %}<input type="hidden" name="{{ k }}" value="{{ v }}">
{% endfor %}<input type="hidden" name="csrf_token" value="{{ csrf }}">"""

_LOGIN = """{% extends "base" %}
{% block title %}Sign in{% endblock %}
{% block body %}
<h1>Sign in to artifactd</h1>
{% if client_name %}<p class="note">to continue to <strong>{{ client_name }}</strong></p>{% endif %}
<form method="post" action="{{ action }}">
""" + _HIDDEN + """
<input type="hidden" name="action" value="login">
<label for="email">Email</label>
<input type="email" id="email" name="email" autocomplete="username" value="{{ email or '' }}" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="buttons"><button type="submit" class="primary" id="sign-in">Sign in</button></div>
</form>
{% endblock %}
"""

_CHANGE = """{% extends "base" %}
{% block title %}Choose a new password{% endblock %}
{% block body %}
<h1>Choose a new password</h1>
<p class="note">Signed in as <strong>{{ user_email }}</strong>. Your password was set by the server and
can be used only once: choose your own to continue.</p>
<form method="post" action="{{ action }}">
""" + _HIDDEN + """
<input type="hidden" name="action" value="change_password">
<label for="new_password">New password (at least {{ min_length }} characters)</label>
<input type="password" id="new_password" name="new_password" autocomplete="new-password" required>
<label for="confirm_password">Repeat it</label>
<input type="password" id="confirm_password" name="confirm_password" autocomplete="new-password" required>
<div class="buttons"><button type="submit" class="primary" id="save-password">Save and continue</button></div>
</form>
{% endblock %}
"""

_CONSENT = """{% extends "base" %}
{% block title %}Authorize {{ client_name }}{% endblock %}
{% block body %}
<h1>Authorize {{ client_name }}</h1>
<p><strong>{{ client_name }}</strong> asks to act as <strong id="user-email">{{ user_email }}</strong>.</p>
{% if user_code %}<p>Check that your device shows this code: <code class="user-code" id="user-code">{{ user_code }}</code></p>{% endif %}
<p>It will be able to:</p>
<ul class="scopes" id="scopes">
{% for s, d in scopes %}<li data-scope="{{ s }}"><strong>{{ s }}</strong>: {{ d }}</li>
{% endfor %}</ul>
{% if accounts %}<p class="note">On your accounts: {% for a in accounts %}<strong>{{ a.account_name }}</strong>
({{ a.role }}){% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}
{% if dropped %}<p class="note" id="dropped">Not offered by this server and left out: {{ dropped|join(", ") }}.</p>{% endif %}
<form method="post" action="{{ action }}">
""" + _HIDDEN + """
<div class="buttons">
<button type="submit" name="action" value="allow" class="primary" id="allow">Allow</button>
<button type="submit" name="action" value="deny" id="deny">Deny</button>
</div>
</form>
{% endblock %}
"""

_DEVICE = """{% extends "base" %}
{% block title %}Connect a device{% endblock %}
{% block body %}
<h1>Connect a device</h1>
<p>Enter the code shown on your device.</p>
<form method="post" action="{{ action }}">
""" + _HIDDEN + """
<input type="hidden" name="action" value="lookup">
<label for="user_code">Code</label>
<input type="text" id="user_code" name="user_code" autocomplete="off" autocapitalize="characters"
       placeholder="XXXX-XXXX" value="{{ user_code or '' }}" required autofocus>
<div class="buttons"><button type="submit" class="primary" id="continue">Continue</button></div>
</form>
{% endblock %}
"""

_DONE = """{% extends "base" %}
{% block title %}{{ heading }}{% endblock %}
{% block body %}
<h1 id="heading">{{ heading }}</h1>
<p id="message">{{ message }}</p>
{% endblock %}
"""

env = Environment(
    loader=DictLoader({"base": _BASE, "login": _LOGIN, "change_password": _CHANGE, "consent": _CONSENT,
                       "device": _DEVICE, "done": _DONE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def render(name: str, **ctx) -> str:
    ctx.setdefault("error", None)
    ctx.setdefault("hidden", {})
    return env.get_template(name).render(**ctx)
