// Package runlog reads what a flextrain run leaves in its folder, for the scripts that turn runs into
// tables (scripts/results, scripts/selection): its JSON files and the mean of its training log.
package runlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// ReadJSON decodes the JSON file at path into v; a decoding error names the file.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// MinSteps is the shortest run whose step time is reported: a shorter one is mostly start-up.
const MinSteps = 10

// Metrics is what a run's metrics.jsonl says over the whole run.
type Metrics struct {
	HR        float64 // mean logged hr_selected_frac over the step lines; 0 when none
	HRLogged  int     // step lines that logged it
	MsPerStep float64 // train_runtime / global_step; NaN for a run of fewer than MinSteps steps
}

// ReadMetrics reads a run's metrics.jsonl. Lines that are not objects of numbers (torn, or with text
// fields) are skipped.
func ReadMetrics(path string) (Metrics, error) {
	m := Metrics{MsPerStep: math.NaN()}
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	var sum float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]float64
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if v, ok := rec["hr_selected_frac"]; ok && rec["step"] > 0 {
			sum, m.HRLogged = sum+v, m.HRLogged+1
		}
		if rt, ok := rec["train_runtime"]; ok && rec["global_step"] >= MinSteps {
			m.MsPerStep = 1000 * rt / rec["global_step"]
		}
	}
	if m.HRLogged > 0 {
		m.HR = sum / float64(m.HRLogged)
	}
	return m, sc.Err()
}
