-- docker-compose: one PostgreSQL server, one database per service.
CREATE DATABASE fer_reports OWNER fer;
CREATE DATABASE fer_inference OWNER fer;
