using System.Runtime.InteropServices;
using Bastion.Configuration;
using Bastion.Hosting;

namespace Bastion.Cli;

/// <summary>
/// `bastion run`: load, start, report where it listens (and READY to systemd), reload on SIGHUP, drain on SIGTERM.
/// A configuration with errors exits 2; a gateway that cannot start (address in use, log or certificate it cannot
/// open) prints one line naming the part and exits 1, never a stack trace.
/// </summary>
static class RunCommand
{
    public static async Task<int> RunAsync(string[] args)
    {
        var file = Commands.ConfigOption(ref args);
        bool watch = !Commands.Flag(ref args, "--no-watch");
        Commands.NoMore(args, "-c", "--config", "--no-watch");
        Runtime runtime;
        try { runtime = Runtime.Load(file); }
        catch (ConfigException e)
        {
            foreach (var err in e.Errors) Console.Error.WriteLine(err);
            Console.Error.WriteLine("bastion: configuration has errors; not starting");
            return Commands.ExitUsage;
        }

        using var systemd = new SystemdNotifier();
        GatewayHost host;
        try { host = new GatewayHost(runtime, file); }
        catch (StartupException e) { return CannotStart(e, systemd); }
        await using var owned = host;
        host.ReloadStarting += systemd.Reloading;
        host.ReloadFinished += error => systemd.Ready(error is null ? Status(host) : $"{Status(host)}; last reload: {error}");

        // Signals are taken over before anything says "running": a SIGHUP must never kill a starting gateway.
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            // The host logs the outcome (reloaded, or refused with every error) on stderr.
            _ = started.Task.ContinueWith(_ => host.ReloadAsync("SIGHUP"), TaskScheduler.Default).Unwrap();
        });
        try { await host.StartAsync(); }
        catch (Exception e) when (StartupFault.IsExpected(e)) { return CannotStart(e, systemd); }
        foreach (var (name, l) in host.Listeners)
            Console.Error.WriteLine($"bastion: listener '{name}' ({ListenerTypes.Name(l.Type)}) listening on {l.BoundEndPoint}");
        Console.Error.WriteLine(file is null
            ? $"bastion {Commands.Version} running (embedded default configuration); SIGTERM stops"
            : watch ? $"bastion {Commands.Version} running ({file}); SIGHUP or a change to the file reloads, SIGTERM stops"
            : $"bastion {Commands.Version} running ({file}); SIGHUP reloads (--no-watch), SIGTERM stops");
        started.TrySetResult();
        systemd.Ready(Status(host));

        using var watcher = file is null || !watch ? null : new ConfigWatcher(host);
        using var heapBudget = HeapBudget.Start(() => host.Connections.Count);
        using var memoryReport = MemoryReport.Start();
        await stop.Task;
        var drain = host.Current.Config.Listeners.Select(l => l.Limits.DrainTimeout).DefaultIfEmpty(TimeSpan.FromSeconds(10)).Max();
        systemd.Stopping($"draining open connections for up to {drain.TotalSeconds:0.#}s");
        Console.Error.WriteLine($"bastion: stopping: no new connections; draining open ones for up to {drain.TotalSeconds:0.#}s");
        watcher?.Dispose();
        await host.StopAsync(drain);
        Console.Error.WriteLine("bastion: stopped");
        return Commands.ExitOk;
    }

    static string Status(GatewayHost host) =>
        $"{host.Listeners.Count} listener(s) up, configuration generation {host.Current.Generation}";

    static int CannotStart(Exception e, SystemdNotifier systemd)
    {
        var line = e is StartupException ? e.Message : StartupFault.Describe(e);
        Console.Error.WriteLine($"bastion: cannot start: {line}");
        systemd.Status($"cannot start: {line}");
        return Commands.ExitStartFailed;
    }
}
