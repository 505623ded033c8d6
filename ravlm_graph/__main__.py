from ravlm_graph.cli.main import main

raise SystemExit(main())
