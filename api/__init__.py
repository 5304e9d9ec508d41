"""The HTTP service (`api.app.create_app`), its store and its batch commands. Importing the
package imports neither Flask nor SQLAlchemy: the command line loads them only for the
commands that use them."""
