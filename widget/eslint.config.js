// ESLint for the widget's own code (make lint; docs/widget.md). script.js runs in Kommo's
// page as a RequireJS module, written as shipped: ES2017, no build step, no bundler.
'use strict';

const js = require('@eslint/js');
const globals = require('globals');

module.exports = [
  { ignores: ['node_modules/**'] },
  js.configs.recommended,
  {
    files: ['script.js'],
    languageOptions: {
      ecmaVersion: 2017,
      sourceType: 'script',
      globals: { ...globals.browser, ...globals.amd, APP: 'readonly' }
    },
    rules: {
      eqeqeq: ['error', 'always'],
      'no-implicit-globals': 'error',
      'no-shadow': 'error',
      'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }],
      'no-eval': 'error',
      'no-new-func': 'error',
      'no-implied-eval': 'error',
      'no-script-url': 'error',
      strict: ['error', 'function'],
      curly: ['error', 'all'],
      'max-len': ['error', { code: 180 }]
    }
  },
  {
    files: ['eslint.config.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node }
  }
];
