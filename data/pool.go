package data

import (
	"context"
	"io"
	"sync"
)

// job is one record to load, numbered in the order the loader consumes them.
type job struct {
	seq        int64
	epoch, pos int
	rec        int
}

// result is a loaded job.
type result struct {
	job
	sample *Sample
	bad    *BadSample
	err    error
}

// pipeline loads records ahead of the consumer in a pool of workers. At most prefetch records are in
// flight or waiting; results come out in sequence order whatever the worker timing, so the batches do not
// depend on the number of workers.
type pipeline struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	slots   chan struct{} // a slot is taken per issued job and given back when the consumer takes it
	results chan result
	pending map[int64]result
	next    int64
}

// startPipeline issues the records from cursor on, epoch after epoch (only epoch 0 when once).
func startPipeline(p *processor, ord *orderer, from Cursor, once bool, workers, prefetch int) *pipeline {
	ctx, cancel := context.WithCancel(context.Background())
	pl := &pipeline{
		cancel:  cancel,
		slots:   make(chan struct{}, prefetch),
		results: make(chan result, prefetch),
		pending: map[int64]result{},
	}
	jobs := make(chan job)
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		defer close(jobs)
		pl.produce(ctx, ord, from, once, jobs)
	}()
	var workersWG sync.WaitGroup
	for range workers {
		workersWG.Add(1)
		go func() {
			defer workersWG.Done()
			work(ctx, p, jobs, pl.results)
		}()
	}
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		workersWG.Wait()
		close(pl.results)
	}()
	return pl
}

// produce sends jobs in consumption order, taking a slot for each.
func (pl *pipeline) produce(ctx context.Context, ord *orderer, from Cursor, once bool, jobs chan<- job) {
	seq, pos := int64(0), from.Position
	for e := from.Epoch; !once || e == 0; e++ {
		order := ord.epoch(e)
		for ; pos < len(order); pos++ {
			select {
			case pl.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{seq: seq, epoch: e, pos: pos, rec: order[pos]}:
				seq++
			case <-ctx.Done():
				return
			}
		}
		pos = 0
	}
}

// work loads jobs until they run out or the pipeline stops.
func work(ctx context.Context, p *processor, jobs <-chan job, out chan<- result) {
	for j := range jobs {
		s, bad, err := p.load(j.rec)
		select {
		case out <- result{job: j, sample: s, bad: bad, err: err}:
		case <-ctx.Done():
			return
		}
	}
}

// get returns the next result in sequence order; io.EOF once a finite pipeline is exhausted.
func (pl *pipeline) get(ctx context.Context) (result, error) {
	for {
		if r, ok := pl.pending[pl.next]; ok {
			delete(pl.pending, pl.next)
			pl.next++
			<-pl.slots
			return r, nil
		}
		select {
		case r, ok := <-pl.results:
			if !ok {
				return result{}, io.EOF
			}
			pl.pending[r.seq] = r
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
}

// stop cancels the workers and waits for them.
func (pl *pipeline) stop() {
	pl.cancel()
	pl.wg.Wait()
}
