"""Web login and logout (session cookie; CSRF-protected forms)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from grader.auth.identity import login_user, logout_user
from grader.extensions import limiter
from grader.services.accounts import user_with_email

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def safe_next(target: str | None) -> str:
    """Only same-site relative paths may be redirected to after login (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("student.index")


def _login_rate() -> str:
    return current_app.config["GRADER_LOGIN_RATE_LIMIT"]


def _login_key() -> str:
    # Per client address: the caller is anonymous, and a per-email key would let one address try every email.
    return f"login:{request.remote_addr}"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate, methods=["POST"], key_func=_login_key)
def login() -> str | Response:
    """Show the login form; on valid credentials start a session."""
    form = LoginForm()
    if form.validate_on_submit():
        email = (form.email.data or "").strip().lower()
        user = user_with_email(email)
        if user is not None and user.check_password(form.password.data or ""):
            login_user(user)
            return redirect(safe_next(request.args.get("next")))
        # One message for both cases: do not reveal which emails have accounts.
        flash("Wrong email or password.", "error")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout() -> Response:
    """End the session (POST with a CSRF token, so a link on another site cannot log you out)."""
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
