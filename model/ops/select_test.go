package ops

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func TestPadMargin(t *testing.T) {
	cases := []struct{ w, h, g, want int }{
		{120, 80, 6, 1}, // docs/DESIGN.md §8's example: ⌊⌊40/2⌋/120·6⌋ = ⌊1.0⌋
		{80, 120, 6, 1},
		{100, 100, 24, 0},
		{1024, 300, 24, 8}, // ⌊362/1024·24⌋ = ⌊8.48⌋
		{640, 480, 24, 3},  // ⌊80/640·24⌋
		{0, 0, 4, 0},       // text-only
		{121, 80, 6, 0},    // integer halving first: ⌊41/2⌋ = 20, 20/121·6 = 0.99
	}
	for _, c := range cases {
		if got := PadMargin(c.w, c.h, c.g); got != c.want {
			t.Errorf("PadMargin(%d, %d, %d) = %d; want %d", c.w, c.h, c.g, got, c.want)
		}
	}
}

// grid parses a picture of cells: '#' selected, '.' not.
func grid(rows ...string) []bool {
	var out []bool
	for _, r := range rows {
		for _, c := range r {
			out = append(out, c == '#')
		}
	}
	return out
}

func TestSelectCells(t *testing.T) {
	// a 4×4 attention map with one hot entry at (1, 2) and a weaker one at (3, 0).
	hot := []float64{0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0.5, 0, 0, 0}
	ramp := make([]float64, 16)
	for i := range ramp {
		ramp[i] = float64(i)
	}
	cases := []struct {
		name      string
		a         []float64
		g, G      int
		ori       [2]int
		threshold float64
		strategy  string
		ratio     float64
		want      []bool
	}{
		// windows 4→3: [0,2) [1,3) [2,4): overlapping, so (1,2) lands in cells (0|1, 1|2), and (3,0) in (2,0).
		{"attention overlapping windows", hot, 4, 3, [2]int{10, 10}, 48, "attention", 0, grid(".##", ".##", "#..")},
		{"strict threshold", hot, 4, 3, [2]int{10, 10}, 127.5, "attention", 0, grid(".##", ".##", "...")},
		{"max equals min selects nothing", make([]float64, 16), 4, 3, [2]int{10, 10}, 48, "attention", 0, grid("...", "...", "...")},
		// wide image: g=4, (160, 64): m = ⌊48/160·4⌋ = 1, rows 0 and 3 zeroed → (3,0) is gone.
		{"pad margin wide", hot, 4, 2, [2]int{160, 64}, 48, "attention", 0, grid(".#", "..")},
		// tall image: m = ⌊48/160·4⌋ = 1, columns 0 and 3 zeroed; max 14 at (3,2), min 0: 255·v/14 > 200
		// keeps 13 at (3,1) and 14 at (3,2), both in the bottom row of cells.
		{"pad margin tall", ramp, 4, 2, [2]int{64, 160}, 200, "attention", 0, grid("..", "##")},
		{"topk", ramp, 4, 2, [2]int{10, 10}, 0, "topk", 0.5, grid("..", "##")},
		{"center", ramp, 4, 3, [2]int{10, 10}, 0, "center", 0.1, grid("...", ".#.", "...")},
		{"center ties row-major", ramp, 4, 2, [2]int{10, 10}, 0, "center", 0.5, grid("##", "..")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := append([]float64(nil), c.a...)
			got, err := SelectCells(a, c.g, c.G, Image{Size: c.ori}, c.threshold, c.strategy, c.ratio, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v; want %v", got, c.want)
			}
		})
	}
}

func TestSelectWindows24to9(t *testing.T) {
	// LLaVA's 24×24 grid pooled to 9×9: windows of 3 or 4 that cover every input row.
	covered := make([]int, 24)
	for i := 0; i < 9; i++ {
		r0, r1 := window(i, 24, 9)
		for r := r0; r < r1; r++ {
			covered[r]++
		}
	}
	for r, c := range covered {
		if c == 0 {
			t.Errorf("row %d is in no window", r)
		}
	}
	if r0, r1 := window(1, 24, 9); r0 != 2 || r1 != 6 {
		t.Errorf("window 1 = [%d,%d); want [2,6)", r0, r1)
	}
}

func TestSelectRandomIsSeeded(t *testing.T) {
	a := make([]float64, 16)
	pickCells := func(seed uint64, step int) []bool {
		rng := rand.New(rand.NewPCG(seed, RandomStream(step, 0, 2)))
		got, err := SelectCells(a, 4, 6, Image{Size: [2]int{1, 1}}, 0, "random", 0.3, rng)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if !reflect.DeepEqual(pickCells(1, 5), pickCells(1, 5)) {
		t.Error("the same (seed, step, sample, layer) gave different cells")
	}
	if reflect.DeepEqual(pickCells(1, 5), pickCells(1, 6)) {
		t.Error("another step gave the same 36 cells")
	}
	if _, err := SelectCells(a, 4, 2, Image{Size: [2]int{1, 1}}, 0, "nearest", 0.3, nil); err == nil {
		t.Error("an unknown strategy was accepted")
	}
}

func TestCellGridTokens(t *testing.T) {
	// Zg = 6, G = 4: HR row R takes cell ⌊R·4/6⌋ = 0,0,1,2,2,3.
	g := CellGrid{G: 4, Zg: 6}
	got := g.Tokens(func(i int) bool { return i == 1*4+3 }) // cell (1, 3)
	want := []int{2*6 + 5}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tokens of cell (1,3) = %v; want %v", got, want)
	}
}

// TestCellGridTokensEveryToken checks Tokens against Cell token by token, for grids whose cells split the HR
// grid evenly and unevenly, with every second cell selected and with a random half.
func TestCellGridTokensEveryToken(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, g := range []CellGrid{{G: 6, Zg: 24}, {G: 4, Zg: 6}, {G: 6, Zg: 16}, {G: 3, Zg: 10}, {G: 5, Zg: 5}} {
		for _, pick := range []func(i int) bool{func(i int) bool { return i%2 == 0 }, func(int) bool { return rng.IntN(2) == 0 }} {
			sel := make([]bool, g.G*g.G)
			for i := range sel {
				sel[i] = pick(i)
			}
			var want []int
			for R := 0; R < g.Zg; R++ {
				for C := 0; C < g.Zg; C++ {
					if sel[g.Cell(R, C)] {
						want = append(want, R*g.Zg+C)
					}
				}
			}
			if got := g.Tokens(func(i int) bool { return sel[i] }); !reflect.DeepEqual(got, want) {
				t.Errorf("%+v, cells %v: tokens %v; want %v", g, sel, got, want)
			}
		}
	}
}

// TestBoxCells checks the oracle's cells: the cells of the padded square that a box overlaps.
func TestBoxCells(t *testing.T) {
	cases := []struct {
		name string
		box  []int
		ori  [2]int
		G    int
		want []bool
	}{
		{"one cell", []int{0, 0, 10, 10}, [2]int{60, 60}, 3, grid("#..", "...", "...")},
		{"ends exclusive", []int{20, 20, 40, 40}, [2]int{60, 60}, 3, grid("...", ".#.", "...")},
		{"across a border", []int{19, 19, 21, 21}, [2]int{60, 60}, 3, grid("##.", "##.", "...")},
		// 60×30 is padded to 60×60 with 15 rows above: box rows 0…9 become 15…24, cell rows 0 and 1.
		{"wide image padded", []int{40, 0, 50, 10}, [2]int{60, 30}, 3, grid("..#", "..#", "...")},
		// 30×60: 15 columns on the left.
		{"tall image padded", []int{0, 50, 5, 60}, [2]int{30, 60}, 3, grid("...", "...", "#..")},
		{"clamped to the square", []int{-100, -100, 1000, 5}, [2]int{60, 60}, 3, grid("###", "...", "...")},
		{"no box", nil, [2]int{60, 60}, 3, grid("...", "...", "...")},
		{"not four numbers", []int{1, 2, 3}, [2]int{60, 60}, 3, grid("...", "...", "...")},
		{"empty box", []int{10, 10, 10, 20}, [2]int{60, 60}, 3, grid("...", "...", "...")},
		{"no image", []int{0, 0, 10, 10}, [2]int{0, 0}, 3, grid("...", "...", "...")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := BoxCells(c.box, c.ori, c.G)
			if !slices.Equal(got, c.want) {
				t.Errorf("BoxCells(%v, %v, %d) = %v; want %v", c.box, c.ori, c.G, got, c.want)
			}
			sel, err := SelectCells(make([]float64, 16), 4, c.G, Image{Size: c.ori, Box: c.box}, 0, "oracle", 0, nil)
			if err != nil || !slices.Equal(sel, c.want) {
				t.Errorf("SelectCells(oracle) = %v, %v; want BoxCells' %v", sel, err, c.want)
			}
		})
	}
}
