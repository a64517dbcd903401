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
