package train

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrOutputDirInUse is returned when a fresh run finds another run's files in output_dir and was not told
// to overwrite them (RunOptions.Overwrite, `--overwrite_output_dir`, as in Hugging Face's Trainer).
var ErrOutputDirInUse = errors.New("train: output_dir holds another run")

// configFile is the name of the effective configuration in output_dir.
const configFile = "config.yaml"

// claimOutput takes output_dir for the accepted run. A resumed run sets the checkpoints newer than its
// starting point aside (a rollback: they belong to an abandoned future, and left in place they would make
// pruning delete the run's own new checkpoints). A fresh run refuses a folder that holds another run's
// checkpoints, metrics or config, unless told to overwrite, and then removes them. Then config.yaml is
// written and metrics.jsonl opened.
func (t *trainer[T]) claimOutput() error {
	if !t.lead() {
		return nil
	}
	var err error
	switch {
	case t.resumed != "":
		err = t.setAsideNewer()
	case t.opts.Overwrite:
		err = t.removePriorRun()
	default:
		err = t.refuseUsedOutput()
	}
	if err != nil {
		return err
	}
	if err := t.writeConfig(); err != nil {
		return err
	}
	return t.log.openMetrics(t.resumed != "")
}

// priorRun lists what output_dir holds of a run: checkpoint directories (complete or not), metrics.jsonl
// and config.yaml. Generated data and the feature cache are not a run's and are not listed.
func (t *trainer[T]) priorRun() ([]string, error) {
	dirs, err := t.store().Dirs()
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var found []string
	for _, d := range dirs {
		found = append(found, filepath.Base(d.Path))
	}
	for _, name := range []string{MetricsFile, configFile} {
		_, err := os.Lstat(filepath.Join(t.cfg.OutputDir, name))
		if err == nil {
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("train: output_dir: %w", err)
		}
	}
	return found, nil
}

// refuseUsedOutput is the error of a fresh run in an output_dir that holds another run.
func (t *trainer[T]) refuseUsedOutput() error {
	found, err := t.priorRun()
	if err != nil || len(found) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s holds %s; resume it (--resume auto or a checkpoint path), choose another output_dir, or start over with --overwrite_output_dir, which removes them",
		ErrOutputDirInUse, t.cfg.OutputDir, strings.Join(found, ", "))
}

// removePriorRun removes another run's checkpoints for a fresh run told to overwrite; metrics.jsonl is
// emptied and config.yaml replaced when they are written.
func (t *trainer[T]) removePriorRun() error {
	removed, err := t.store().RemoveAll()
	if err != nil {
		return fmt.Errorf("train: overwrite %s: %w", t.cfg.OutputDir, err)
	}
	if len(removed) > 0 {
		t.log.warn("--overwrite_output_dir: removed the earlier run's checkpoints", "removed", strings.Join(removed, ", "))
	}
	return nil
}

// setAsideNewer moves the checkpoint directories newer than the resumed step into
// output_dir/abandoned-after-step-<step>-<UTC time>.
func (t *trainer[T]) setAsideNewer() error {
	aside := fmt.Sprintf("abandoned-after-step-%d-%s", t.state.Step, time.Now().UTC().Format("20060102T150405Z"))
	moved, err := t.store().SetAside(t.state.Step, aside)
	if err != nil {
		return fmt.Errorf("train: set aside the checkpoints after step %d: %w", t.state.Step, err)
	}
	if len(moved) > 0 {
		t.log.warn("resumed from an older checkpoint: the newer ones belong to an abandoned run and were moved aside, not deleted",
			"moved", strings.Join(moved, ", "))
	}
	return nil
}

// resumeSpec is the --resume value of opts (auto when empty); under RunOptions.Overwrite it is none, a
// fresh start, and a checkpoint path is an error.
func resumeSpec(opts RunOptions) (string, error) {
	spec := opts.Resume
	if spec == "" {
		spec = "auto"
	}
	if !opts.Overwrite {
		return spec, nil
	}
	if spec != "auto" && spec != "none" {
		return "", fmt.Errorf("train: --overwrite_output_dir starts over; it cannot resume %s", spec)
	}
	return "none", nil
}
