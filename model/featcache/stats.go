package featcache

// Stats counts what a Cache did since New. BytesOnDisk starts from the files found by New and
// follows this process's writes and removals; another process sharing the directory can make it
// stale.
type Stats struct {
	Hits       int64 // Get calls answered, from memory or disk
	DiskHits   int64 // the Hits read from disk
	Misses     int64 // Get calls not answered
	Puts       int64 // Put calls with a valid view and size
	Evictions  int64 // values dropped from memory to honour MaxMemoryBytes
	Corrupt    int64 // damaged files removed
	DiskErrors int64 // files unreadable, undecodable, or not written (includes Corrupt)

	Entries       int   // values held in memory
	BytesInMemory int64 // payload bytes held in memory (at most MaxMemoryBytes)
	BytesOnDisk   int64 // size of the cache files under Dir/<fingerprint>
}

// HitRate returns Hits/(Hits+Misses), or 0 before the first Get.
func (s Stats) HitRate() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// Stats returns a snapshot of the counters; a nil Cache has zero Stats.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Entries = len(c.mem.items)
	s.BytesInMemory = c.mem.bytes
	return s
}
