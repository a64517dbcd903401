package node

import "sync"

// bgCount counts goroutines of one kind (placers, resenders) so that a caller can wait until
// none runs. Unlike a sync.WaitGroup it may be waited on while others start: an Import and a
// round of the agent may each wait while the other starts one.
type bgCount struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while none waits
}

func (c *bgCount) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// wait returns once none runs.
func (c *bgCount) wait() {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	ch := c.idle
	c.mu.Unlock()
	<-ch
}

// startOnce runs fn in the background for key unless one for key runs already (busy holds the
// keys running), counted in c. again is called when fn fails: the work is tried at a later round.
func startOnce(busy *sync.Map, c *bgCount, key string, fn func() error, again func(error)) {
	if _, running := busy.LoadOrStore(key, true); running {
		return
	}
	c.add(1)
	go func() {
		defer c.add(-1)
		defer busy.Delete(key)
		if err := fn(); err != nil {
			again(err)
		}
	}()
}
