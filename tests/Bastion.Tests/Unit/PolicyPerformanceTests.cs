using System.Diagnostics;
using System.Net;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Tests.Unit;

/// <summary>Issue 2 point 2/3: evaluation allocates nothing; a 1,000,000-line domain list loads in under 2 s.</summary>
public class PolicyPerformanceTests
{
    sealed class Headers(string ua) : IHeaderSource
    {
        public string? Get(string name) => name.Equals("User-Agent", StringComparison.OrdinalIgnoreCase) ? ua : null;
    }

    const string TenRules = """
        lists:
          blocked: [ads.example, tracker.example, "*.malware.test"]
          office: [10.0.0.0/8, "2001:db8::/32"]
        policies:
          p:
            default: deny
            rules:
              - deny: { host: "@blocked" }
              - deny: { source: 10.66.0.0/16 }
              - deny: { method: TRACE }
              - deny: { path: "/admin/**" }
              - deny: { header: { User-Agent: ["~(?i)sqlmap", "nikto*"] } }
              - allow: { method: CONNECT, port: 443, host: "*.corp.example" }
              - allow: { source: "@office", method: [GET, HEAD], port: [80, 8000-8999], not: { path: "/private/*" } }
              - allow: { source: "@office", url: "~^http://[a-z.]+/pub/", time: "Mon-Sun 00:00-24:00" }
              - allow: { host: ["~^api[0-9]*\\.partner\\.example$", "static.example"], port: 80 }
              - deny: { content_type: "application/x-*" }
        """;

    [Fact]
    public void Evaluate_allocates_nothing()
    {
        var rt = new ConfigFixture().BuildOk(TenRules);
        var p = rt.Policies["p"];
        Assert.Equal(10, p.AllRules.Length);
        var office = IPAddress.Parse("10.1.2.3");
        var headers = new Headers("curl/8.5");
        var a = new RequestAttributes();
        // A mix that reaches every rule, and the default.
        var cases = new (string Host, int Port, string Method, string Path, string Url, IPAddress Src, bool Allow)[]
        {
            ("x.ads.example", 80, "GET", "/", "http://x.ads.example/", office, false),
            ("www.site.example", 80, "GET", "/index.html", "http://www.site.example/index.html", office, true),
            ("www.site.example", 80, "GET", "/private/x", "http://www.site.example/private/x", office, false),
            ("www.site.example", 8080, "POST", "/pub/a", "http://www.site.example/pub/a", office, true),
            ("vpn.corp.example", 443, "CONNECT", "", "", IPAddress.Loopback, true),
            ("api12.partner.example", 80, "POST", "/v1", "http://api12.partner.example/v1", IPAddress.Loopback, true),
            ("other.example", 80, "GET", "/", "http://other.example/", IPAddress.IPv6Loopback, false),
            ("www.site.example", 80, "GET", "/admin/users", "http://www.site.example/admin/users", office, false),
        };
        int allowed = 0;
        void Run(int n)
        {
            for (int i = 0; i < n; i++)
            {
                var c = cases[i % cases.Length];
                a.ResetRequest();
                a.Source = c.Src;
                a.Host = c.Host;
                a.Port = c.Port;
                a.Method = c.Method;
                a.Path = c.Path;
                a.Url = c.Url;
                a.Headers = headers;
                var d = p.Evaluate(a);
                if (d.Allowed != c.Allow) Assert.Fail($"{c.Method} {c.Host}{c.Path}: {d}");
                if (d.Allowed) allowed++;
                a.ContentType = "text/html";
                if (d.Allowed && !p.EvaluateResponse(a).Allowed) throw new InvalidOperationException("text/html denied");
            }
        }
        Run(2_000); // warm up: JIT, regex runners, DFA states
        const int N = 10_000;
        long before = GC.GetAllocatedBytesForCurrentThread();
        Run(N);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allowed > 0);
        Assert.True(bytes < N / 10, $"{bytes} bytes allocated over {N} evaluations ({(double)bytes / N:0.###} per evaluation)");
    }

    /// <summary>CPU time of the calling thread (Linux schedstat); wall time where that is unavailable.</summary>
    static TimeSpan ThreadCpu()
    {
        const string stat = "/proc/thread-self/schedstat";
        if (!File.Exists(stat)) return Stopwatch.GetElapsedTime(0);
        return TimeSpan.FromTicks(long.Parse(File.ReadAllText(stat).Split(' ')[0]) / 100);
    }

    [Fact]
    public void A_million_line_domain_list_loads_in_under_two_seconds()
    {
        var f = new ConfigFixture();
        var listPath = Path.Combine(f.Dir, "big.txt");
        using (var w = new StreamWriter(listPath))
        {
            w.WriteLine("# generated block list");
            for (int i = 0; i < 1_000_000; i++)
            {
                if (i % 1000 == 0) w.WriteLine($"0.0.0.0 hosts{i}.blocked{i % 97}.example"); // hosts-file lines too
                else w.WriteLine($"site{i}.blocked{i % 97}.example");
            }
        }
        f.File("small.txt", "a.example\n");
        var yaml = """
            lists:
              big: { file: LIST }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
            policies:
              p:
                rules:
                  - deny: { host: "@big" }
                  - allow: {}
            """;
        // Warm-up on a small list so that JIT and first-use costs are not counted.
        File.WriteAllText(f.Path, yaml.Replace("LIST", "small.txt"));
        Runtime.Load(f.Path);
        File.WriteAllText(f.Path, yaml.Replace("LIST", "big.txt"));

        // The box is shared (load averages of 10-60 on 2 cores): the work is judged by this thread's CPU time,
        // which is what the load costs; the wall clock only catches a hang.
        var cpu0 = ThreadCpu();
        var sw = Stopwatch.StartNew();
        var rt = Runtime.Load(f.Path);
        sw.Stop();
        var cpu = ThreadCpu() - cpu0;
        var what = $"loading 1,000,000 lines took {cpu.TotalMilliseconds:0} ms of CPU, {sw.Elapsed.TotalMilliseconds:0} ms of wall time";
        Assert.True(cpu < TimeSpan.FromSeconds(2), what);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(60), what);

        var p = rt.Policies["p"];
        bool Denied(string host) => !p.Evaluate(new RequestAttributes { Host = host }).Allowed;
        Assert.True(Denied("site1.blocked1.example"));
        Assert.True(Denied("site999999.blocked" + (999_999 % 97) + ".example"));
        Assert.True(Denied("www.site500001.blocked" + (500_001 % 97) + ".example"));   // subdomain
        Assert.True(Denied("hosts3000.blocked" + (3000 % 97) + ".example"));           // from a hosts-file line
        Assert.False(Denied("site1.blocked2.example"));
        Assert.False(Denied("blocked1.example"));
        Assert.False(Denied("site1000000.blocked1.example"));
    }
}
