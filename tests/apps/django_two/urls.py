from django.conf import settings
from django.contrib import admin
from django.urls import path

import views

admin.site.site_title = admin.site.site_header = settings.SITE_TITLE

urlpatterns = [path("", views.index, name="index"), path("admin/", admin.site.urls)]
