package train

import (
	"runtime"
	"testing"
)

// validState is a trainer_state.json that decodeState accepts against stateLimitsOf.
const validState = `{"global_step": 4, "epoch": 0.33, "data_cursor": {"epoch": 0, "position": 32},
 "data_counts": {"records": 32, "samples": 31, "with_image": 30, "text_only": 1, "tokens": 2000, "truncated": 0,
 "skipped": 1, "bad": {"missing": 1}}, "optimizer_step": 3, "alpha": 0.5, "learning_rate": 0.001,
 "skipped_nonfinite": 1, "nonfinite_in_row": 0, "best_metric": 2.5, "best_step": 4, "seed": 3407,
 "frozen_weights_sha256": "6a09e667f3bcc908b2fb1366ea957d3e3adec17512775099da2cfd1d1bcd1e45"}`

var stateLimitsOf = stateLimits{step: 4, seed: 3407, perEpoch: 96}

func TestDecodeStateAcceptsValid(t *testing.T) {
	st, err := decodeState([]byte(validState), stateLimitsOf)
	if err != nil || st.Step != 4 || st.OptimizerStep != 3 || st.Counts.Bad["missing"] != 1 {
		t.Fatalf("decodeState(valid) = %+v, %v; want the state of step 4", st, err)
	}
}

// FuzzTrainerState: no trainer_state.json makes decodeState panic, a state it accepts satisfies every
// invariant the trainer relies on, and decoding allocates at most allocPerByte bytes per input byte plus
// allocSlack: encoding/json keeps the input and the decoded values, a few times its size.
func FuzzTrainerState(f *testing.F) {
	const allocPerByte, allocSlack = 64, 64 << 10
	f.Add([]byte(validState))
	f.Add([]byte(`{"global_step": 4, "optimizer_step": -3, "seed": 3407}`))
	f.Add([]byte(`{"data_counts": {"bad": {"a": -1}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, err := decodeState(b, stateLimitsOf)
		runtime.ReadMemStats(&after)
		if used := after.TotalAlloc - before.TotalAlloc; used > uint64(allocPerByte*len(b)+allocSlack) {
			t.Errorf("decoding %d bytes allocated %d", len(b), used)
		}
		if err != nil {
			return
		}
		if st.Step != 4 || st.OptimizerStep < 0 || st.OptimizerStep > st.Step || st.NonFiniteInRow >= maxNonFinite ||
			(st.WorldSize <= 1 && st.Cursor.Position > stateLimitsOf.perEpoch) || st.Cursor.Position < 0 ||
			!(st.Alpha >= 0 && st.Alpha <= 1) || (st.WorldSize > 1) != (len(st.Ranks) > 0) {
			t.Errorf("decodeState accepted %+v", st)
		}
	})
}
