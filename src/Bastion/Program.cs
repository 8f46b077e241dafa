using Bastion.Cli;

return await Commands.MainAsync(args);
