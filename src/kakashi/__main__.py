from kakashi.cli import main

raise SystemExit(main())
