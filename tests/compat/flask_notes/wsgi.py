"""A Flask app with extensions: Flask-SQLAlchemy (its own sqlite file) and Flask-Login."""
import os

from flask import Flask, jsonify, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["FLASK_SECRET"],
    SQLALCHEMY_DATABASE_URI=f"sqlite:///{os.environ['FLASK_DB']}",
    # Apps mounted on one host share its cookies unless each cookie has its own path.
    SESSION_COOKIE_PATH=os.environ.get("COOKIE_PATH", "/"),
)
db = SQLAlchemy(app)
login = LoginManager(app)


class Note(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    owner = db.Column(db.String(40))
    text = db.Column(db.String(200))


class User(UserMixin):
    def __init__(self, name):
        self.id = name


@login.user_loader
def load_user(name):
    return User(name)


@app.post("/login")
def do_login():
    login_user(User(request.form["name"]))
    return jsonify(user=request.form["name"])


@app.route("/notes", methods=["GET", "POST"])
@login_required
def notes():
    if request.method == "POST":
        db.session.add(Note(owner=current_user.id, text=request.form["text"]))
        db.session.commit()
    return jsonify(user=current_user.id, notes=[n.text for n in Note.query.order_by(Note.id)])


with app.app_context():
    db.create_all()

application = app
