package main

import (
	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/config"
)

// configFlags are the flags of every command that reads a run configuration.
func configFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Required: true, Usage: "run configuration `FILE` (YAML)"},
		&cli.GenericFlag{Name: "set", Value: &setFlag{}, Usage: "override a config key, `key=value` (repeatable)"},
	}
}

// loadConfig reads --config with every --set applied.
func loadConfig(cx *cli.Context) (config.Config, error) {
	return config.Load(cx.String("config"), cx.Generic("set").(*setFlag).values)
}
