-- One row per cron tick that ran: the primary key is what makes a tick run once, whatever the workers' clocks.
CREATE TABLE millrace_cron_ticks (
    name       text NOT NULL,
    tick_at    timestamptz NOT NULL,
    job_id     text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, tick_at)
);
