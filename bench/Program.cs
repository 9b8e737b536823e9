return args.Length > 0 && args[0] == "cfa" ? CfaBenchmark.Run(args[1..]) : 1;
