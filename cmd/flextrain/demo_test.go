package main

import (
	"io"
	"strings"
	"testing"
)

// TestDemoConfigErrors checks that demo names the configuration it cannot read, stage by stage.
func TestDemoConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--base", "missing-base.yaml"}, "missing-base.yaml"},
		{[]string{"--base", "../../configs/quickstart-base.yaml", "--config", "missing.yaml"}, "missing.yaml"},
	}
	for _, tt := range tests {
		err := runCommand(demoCommand(), tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("demo %v: %v; want an error naming %s", tt.args, err, tt.want)
		}
	}
}
