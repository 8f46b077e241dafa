using Bastion.Configuration;
using Bastion.Hosting;

namespace Bastion.Cli;

/// <summary>`bastion check`: the configuration's errors and warnings as FILE:LINE:COL, and what the machine lets it do.</summary>
static class CheckCommand
{
    public static int Run(string[] args)
    {
        var file = Commands.ConfigOption(ref args);
        Commands.NoMore(args, "-c", "--config");
        if (file is null) Console.Error.WriteLine($"bastion: no -c and no {Commands.SystemConfig}: checking the embedded default");
        string text;
        if (file is null) text = ConfigLoader.DefaultYaml();
        else
        {
            try { text = File.ReadAllText(file); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.WriteLine($"{file}:1:1: cannot read configuration: {Runtime.WhyUnreadable(file, e)}");
                return Commands.ExitUsage;
            }
        }
        var (rt, errors) = Runtime.Build(text, file);
        if (rt is not null)
        {
            if (SanityChecks.NothingToRun(rt.Config, errors) is { } none) errors.Add(none);
            errors.AddRange(EnvironmentChecks.Check(rt.Config));
        }
        foreach (var e in errors.OrderBy(e => e.Pos.Line).ThenBy(e => e.Pos.Col)) Console.WriteLine(e);
        if (errors.Any(e => !e.IsWarning)) return Commands.ExitUsage;
        Console.WriteLine("ok");
        return Commands.ExitOk;
    }
}
