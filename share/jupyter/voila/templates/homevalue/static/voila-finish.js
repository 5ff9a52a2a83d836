/*
 * The end of a page's <body>: every cell has arrived. Voilà's lab template calls this from
 * an inline script, which the page's Content-Security-Policy does not run.
 */
window.voila_finish();
