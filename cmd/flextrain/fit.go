package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/dist"
	"github.com/flextrain/flextrain/train"
)

func init() { register(fitCommand()) }

// fitCommand is `flextrain fit`: train the FlexAttention layers as the configuration says.
func fitCommand() *cli.Command {
	return &cli.Command{
		Name:  "fit",
		Usage: "train the configured model; resumes from the newest checkpoint in output_dir",
		Description: "SIGINT or SIGTERM finishes the current step, commits a checkpoint and exits with 130 or 143;\n" +
			"a second signal exits at once (a checkpoint being written is never left half visible).\n" +
			"A fresh run refuses an output_dir that holds another run unless --overwrite_output_dir is given;\n" +
			"resuming an older checkpoint moves the newer ones to output_dir/abandoned-after-step-N-TIME.\n" +
			"Built with -tags mpi, `mpirun -np N flextrain fit …` trains one model on N ranks (data parallel).",
		Flags: append(configFlags(), deviceFlag,
			&cli.StringFlag{Name: "resume", Value: "auto", Usage: "`auto` (newest verified checkpoint), none, or a checkpoint path"},
			&cli.BoolFlag{Name: "overwrite_output_dir", Usage: "start over in an output_dir that holds another run, removing its checkpoints and metrics"},
			&cli.BoolFlag{Name: "allow-data-change", Usage: "resume although data_path's content differs from the file the checkpoint was trained on"},
			&cli.BoolFlag{Name: "reshard", Usage: "resume a checkpoint of another number of ranks, restarting the epoch's order from the global sample count"}),
		Action: func(cx *cli.Context) error {
			cfg, err := loadConfig(cx)
			if err != nil {
				return err
			}
			comm, err := dist.Open()
			if err != nil {
				return err
			}
			ctx, sig := withSignals(cx.Context)
			defer closeComm(comm, ctx)
			_, err = train.Run(ctx, cfg, train.RunOptions{Resume: cx.String("resume"), Out: cx.App.Writer,
				Overwrite: cx.Bool("overwrite_output_dir"), AllowDataChange: cx.Bool("allow-data-change"),
				Comm: comm, Reshard: cx.Bool("reshard")})
			if err != nil && comm.Size() > 1 {
				err = fmt.Errorf("rank %d of %d: %w", comm.Rank(), comm.Size(), err)
			}
			if errors.Is(err, train.ErrInterrupted) {
				return cli.Exit(fmt.Sprintf("flextrain: stopped by %v; every finished step is in the newest checkpoint", sig()), 128+int(sig().(syscall.Signal)))
			}
			return err
		},
	}
}

// finalizeWait bounds how long an interrupted rank waits for MPI_Finalize: mpirun forwards a SIGTERM it
// receives to the ranks and then stops serving them, so Finalize would only return when mpirun kills the
// rank (odls_base_sigkill_timeout, 1 s by default, after the SIGTERM) and the rank's exit status would be
// lost. Its checkpoint is committed by then.
const finalizeWait = 300 * time.Millisecond

// closeComm ends this rank's part in the group: at once after a signal (finalizeWait), else fully.
func closeComm(comm dist.Comm, ctx context.Context) {
	if ctx.Err() == nil {
		comm.Close()
		return
	}
	done := make(chan struct{})
	go func() { comm.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(finalizeWait):
	}
}

// withSignals returns a context cancelled by the first SIGINT or SIGTERM, and the signal received. A second
// signal exits the process at once.
func withSignals(parent context.Context) (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	got := make(chan os.Signal, 1)
	go func() {
		s := <-ch
		got <- s
		fmt.Fprintf(os.Stderr, "\nflextrain: %v: finishing the current step and saving a checkpoint (again to quit now)\n", s)
		cancel()
		s = <-ch
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	return ctx, func() os.Signal {
		select {
		case s := <-got:
			got <- s
			return s
		default:
			return syscall.SIGINT
		}
	}
}
