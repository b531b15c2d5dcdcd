from botenv.cli import main

raise SystemExit(main())
