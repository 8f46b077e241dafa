using System.IO.Hashing;
using Bastion.Configuration;

namespace Bastion.Hosting;

/// <summary>
/// Reloads the gateway when its configuration file, or a file it names (lists, htpasswd, admin token), changes.
/// Editors save in several steps (truncate, write, rename), so events are debounced, and a reload only happens
/// when the files' content really differs from what was last loaded. inotify may be unavailable or exhausted
/// (and misses symlink swaps such as Kubernetes ConfigMaps), so a cheap stat poll backs it up.
/// </summary>
public sealed class ConfigWatcher : IDisposable
{
    readonly GatewayHost _host;
    readonly TimeSpan _debounce;
    readonly List<FileSystemWatcher> _watchers = [];
    readonly Timer _debounceTimer;
    readonly Timer _poll;
    readonly object _gate = new();
    HashSet<string> _files = new(StringComparer.Ordinal);
    string _fingerprint;
    string _stamp;
    int _reloading;
    bool _disposed;

    /// <summary>Reloads started by this watcher (for tests and the log).</summary>
    public int Reloads => Volatile.Read(ref _reloadCount);
    int _reloadCount;

    /// <summary>Events and polls that armed the debounce timer (for tests: a sibling file's writes arm nothing).</summary>
    internal int Pokes => Volatile.Read(ref _pokes);
    int _pokes;

    /// <summary>File-system events that reached this watcher (for tests: the name filters keep a sibling file's out).</summary>
    internal int Events => Volatile.Read(ref _events);
    int _events;

    public ConfigWatcher(GatewayHost host, TimeSpan? debounce = null, TimeSpan? poll = null)
    {
        if (host.ConfigPath is null) throw new InvalidOperationException("the embedded default configuration has no file to watch");
        _host = host;
        _debounce = debounce ?? TimeSpan.FromMilliseconds(300);
        _debounceTimer = new Timer(_ => OnQuiet(), null, Timeout.Infinite, Timeout.Infinite);
        Rewatch(host.Current.Config);
        _fingerprint = Fingerprint();
        _stamp = Stamp();
        var p = poll ?? TimeSpan.FromSeconds(2);
        _poll = new Timer(_ => OnPoll(), null, p, p);
    }

    /// <summary>Every file whose content is part of the configuration in force.</summary>
    public static IReadOnlyCollection<string> FilesOf(BastionConfig c, string configPath)
    {
        var files = new HashSet<string>(StringComparer.Ordinal) { Path.GetFullPath(configPath) };
        foreach (var l in c.Lists.Values)
            if (l.File is not null) files.Add(c.Resolve(l.File));
        if (c.Identity?.UsersFile is { } users) files.Add(c.Resolve(users));
        if (c.Admin?.TokenFile is { } token) files.Add(c.Resolve(token));
        if (c.Resolver?.HostsFile is { } hostsFile) files.Add(c.Resolve(hostsFile));
        // A certificate renewed in place (certbot writes the same path) is served after the reload this triggers.
        foreach (var (_, t) in EnvironmentChecks.Certificates(c))
        {
            files.Add(c.Resolve(t.Cert));
            files.Add(c.Resolve(t.Key));
        }
        return files;
    }

    void Rewatch(BastionConfig c)
    {
        lock (_gate)
        {
            if (_disposed) return;
            var files = FilesOf(c, _host.ConfigPath!);
            if (_files.SetEquals(files) && _watchers.Count > 0) return;
            foreach (var w in _watchers) w.Dispose();
            _watchers.Clear();
            _files = new HashSet<string>(files, StringComparer.Ordinal);
            foreach (var group in _files.GroupBy(Path.GetDirectoryName, StringComparer.Ordinal))
            {
                var dir = group.Key;
                if (dir is null || !Directory.Exists(dir)) continue;
                try
                {
                    var w = new FileSystemWatcher(dir)
                    {
                        NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
                        IncludeSubdirectories = false,
                    };
                    // The access log often lives beside the config, and every flush of it is an event in this directory:
                    // name filters drop those before an event object is made (a name with * or ? matches a superset,
                    // which Watched still narrows).
                    foreach (var f in group) w.Filters.Add(Path.GetFileName(f));
                    w.Changed += OnEvent;
                    w.Created += OnEvent;
                    w.Deleted += OnEvent;
                    w.Renamed += (s, e) =>
                    {
                        Interlocked.Increment(ref _events);
                        if (Watched(e.OldFullPath) || Watched(e.FullPath)) Poke();
                    };
                    w.Error += (_, _) => Poke();
                    w.EnableRaisingEvents = true;
                    _watchers.Add(w);
                }
                catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException or PlatformNotSupportedException)
                {
                    // inotify limits reached or no permission: the stat poll still notices changes.
                    _host.Diagnostics.WriteLine($"bastion: cannot watch {dir} ({e.Message}); checking it every few seconds instead");
                }
            }
        }
    }

    bool Watched(string path)
    {
        lock (_gate) return _files.Contains(path);
    }

    void OnEvent(object sender, FileSystemEventArgs e)
    {
        Interlocked.Increment(ref _events);
        if (Watched(e.FullPath)) Poke();
    }

    void Poke()
    {
        Interlocked.Increment(ref _pokes);
        lock (_gate)
            if (!_disposed) _debounceTimer.Change(_debounce, Timeout.InfiniteTimeSpan);
    }

    void OnPoll()
    {
        var stamp = Stamp();
        if (stamp == _stamp) return;
        _stamp = stamp;
        Poke();
    }

    void OnQuiet()
    {
        if (Interlocked.Exchange(ref _reloading, 1) == 1)
        {
            Poke(); // a reload is running: look again once it is done
            return;
        }
        _ = Task.Run(async () =>
        {
            try { await CheckAsync().ConfigureAwait(false); }
            catch (Exception e)
            {
                _host.Diagnostics.WriteLine($"bastion: reload after a file change failed: {e.Message}");
            }
            finally { Interlocked.Exchange(ref _reloading, 0); }
        });
    }

    /// <summary>Reloads if the watched files' content changed since the last look; says whether it did.</summary>
    public async Task<bool> CheckAsync()
    {
        var fp = Fingerprint();
        if (fp == _fingerprint) return false;
        _fingerprint = fp;
        _stamp = Stamp();
        Interlocked.Increment(ref _reloadCount);
        await _host.ReloadAsync("file change").ConfigureAwait(false);
        Rewatch(_host.Current.Config);
        return true;
    }

    string[] Snapshot()
    {
        lock (_gate) return [.. _files.Order(StringComparer.Ordinal)];
    }

    /// <summary>
    /// Content hashes: a save that changes nothing (touch, an editor's backup dance) reloads nothing. XxHash128, not a
    /// cryptographic hash: this only tells a change from none, and it keeps the crypto library (OpenSSL, ~5 MiB
    /// resident) out of a gateway that has no other use for it.
    /// </summary>
    string Fingerprint()
    {
        var all = new XxHash128();
        var one = new XxHash128();
        foreach (var f in Snapshot())
        {
            all.Append(System.Text.Encoding.UTF8.GetBytes(f + "\0"));
            try
            {
                using var s = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                one.Append(s);
                all.Append(one.GetHashAndReset());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                all.Append("missing"u8);
            }
        }
        return Convert.ToHexString(all.GetHashAndReset());
    }

    /// <summary>What the poll compares: size and modification time, no reading.</summary>
    string Stamp()
    {
        var parts = new List<string>();
        foreach (var f in Snapshot())
        {
            var fi = new FileInfo(f);
            try
            {
                // A symlink swap (ConfigMap) changes the target, not the link.
                if (fi.LinkTarget is not null && fi.ResolveLinkTarget(true) is FileInfo t) fi = t;
            }
            catch (IOException) { }
            parts.Add(fi.Exists ? $"{fi.FullName}:{fi.Length}:{fi.LastWriteTimeUtc.Ticks}" : $"{f}:-");
        }
        return string.Join('|', parts);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            foreach (var w in _watchers) w.Dispose();
            _watchers.Clear();
        }
        _debounceTimer.Dispose();
        _poll.Dispose();
    }
}
