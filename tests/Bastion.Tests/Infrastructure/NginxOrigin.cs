using System.Net;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// nginx (Debian package `nginx`) as a real, normalising origin on 127.0.0.1: it decodes escapes, merges slashes
/// and resolves dot-segments before matching a location, as many backends do. Each location answers with its
/// name and nginx's normalised `$uri`, so a test sees which area a request really reached:
///   /admin/…  → "ADMIN /admin/…"       (the area the policies deny)
///   *.exe     → "EXE /…"
///   anything  → "OPEN /…"
/// Runs as one process (master_process off) so that stopping it stops everything.
/// </summary>
public sealed class NginxOrigin : IAsyncDisposable
{
    readonly BackgroundProcess _proc;
    public int Port { get; }
    public IPAddress Address { get; }
    public string Dir { get; }
    public string Url => $"http://{Address}:{Port}";

    NginxOrigin(BackgroundProcess proc, IPAddress address, int port, string dir)
    {
        _proc = proc;
        Address = address;
        Port = port;
        Dir = dir;
    }

    public static async Task<NginxOrigin> StartAsync(string address = "127.0.0.1")
    {
        var dir = Scratch.NewDir("nginx");
        foreach (var t in new[] { "b", "p", "f", "u", "s" }) Directory.CreateDirectory(Path.Combine(dir, "t", t));
        // Workers and the single process may drop privileges: the folder must be readable by all.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
        for (int attempt = 0; ; attempt++)
        {
            int port = Wait.FreePort();
            var conf = Path.Combine(dir, "nginx.conf");
            await File.WriteAllTextAsync(conf, $$"""
                worker_processes 1; daemon off; master_process off;
                pid {{dir}}/nginx.pid; error_log {{dir}}/error.log warn;
                events { worker_connections 256; }
                http {
                  client_body_temp_path {{dir}}/t/b; proxy_temp_path {{dir}}/t/p; fastcgi_temp_path {{dir}}/t/f;
                  uwsgi_temp_path {{dir}}/t/u; scgi_temp_path {{dir}}/t/s;
                  access_log {{dir}}/access.log;
                  default_type text/plain;
                  server {
                    listen {{address}}:{{port}};
                    location /admin/ { return 200 "ADMIN $uri\n"; }
                    location ~ \.exe$ { return 200 "EXE $uri\n"; }
                    location / { return 200 "OPEN $uri\n"; }
                  }
                }
                """);
            var proc = Proc.Start("nginx", ["-p", dir, "-c", conf]);
            try
            {
                await Wait.ForPortAsync(port, TimeSpan.FromSeconds(10), address);
                return new NginxOrigin(proc, IPAddress.Parse(address), port, dir);
            }
            catch (TimeoutException) when (attempt < 2)
            {
                // The free port was taken in between: try another.
                await proc.DisposeAsync();
            }
        }
    }

    /// <summary>Request lines nginx received (its access log), to show what reached it.</summary>
    public string AccessLog => File.Exists(Path.Combine(Dir, "access.log")) ? File.ReadAllText(Path.Combine(Dir, "access.log")) : "";

    public async ValueTask DisposeAsync()
    {
        await _proc.DisposeAsync();
        try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
