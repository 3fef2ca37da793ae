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

// deviceFlag is --device, for the commands that train: the config's device key.
var deviceFlag = &cli.StringFlag{Name: "device", Usage: "where the steps run, `DEVICE`: cpu, cuda or cuda:N (the config's device key; cuda needs a build with -tags gpu)"}

// loadConfig reads --config with every --set applied, then --device where the command has it.
func loadConfig(cx *cli.Context) (config.Config, error) {
	sets := cx.Generic("set").(*setFlag).values
	if cx.IsSet("device") {
		sets = append(sets[:len(sets):len(sets)], "device="+cx.String("device"))
	}
	return config.Load(cx.String("config"), sets)
}
